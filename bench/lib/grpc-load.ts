import { create, toBinary } from "@bufbuild/protobuf";
import { CreateReservationRequestSchema } from "../../gen/shop/reservation/v1/reservation_pb.js";
import { frame, openSession, startCall } from "./h2-grpc.js";
import { quantile } from "./quantile.js";
import type { Pair } from "./seed.js";

/**
 * The gRPC load generator. h2load sends one fixed body (`-d file`) on every request and cannot vary
 * it, while every reservation needs its own idempotency key (a repeated key only replays the first
 * answer): so this is a minimal closed-loop client on node:http2, no gRPC library, one h2c
 * connection with `inFlight` streams, one freshly encoded request per call.
 */
export interface LoadResult {
  calls: number;
  errors: number;
  /** The first error seen, for the log. */
  firstError: string | null;
  seconds: number;
  p50Ms: number;
  p99Ms: number;
  /** The tail beyond p99, for the JSON (the table shows p50 and p99). */
  p999Ms?: number;
  maxMs?: number;
  /** CPU of this (the load generator's) process per call, ms. */
  clientCpuMsPerCall: number;
}

const PATH = "/shop.reservation.v1.ReservationService/CreateReservation";

/** What one call reserves: one unit of each product, for the buyer. */
export interface Pick {
  buyer: string;
  products: string[];
}

/** Picks uniformly among `pairs` (one product each). */
export const uniformPick = (pairs: Pair[]) => (): Pick => {
  const pair = pairs[Math.floor(Math.random() * pairs.length)] as Pair;
  return { buyer: pair.buyer, products: [pair.product] };
};

/**
 * Closed loop (`inFlight` callers, each sending its next call when the last one answers), or with
 * `ratePerSecond` open loop: calls start on a fixed schedule whatever the answers do, so latency is
 * the service time at that load rather than queueing behind our own callers (scenario 4 compares
 * latencies this way); at most `inFlight` are outstanding.
 */
export async function grpcLoad(opts: {
  port: number;
  pick: () => Pick;
  inFlight: number;
  seconds: number;
  token: string | null;
  tag: string;
  ratePerSecond?: number;
}): Promise<LoadResult> {
  const session = await openSession(opts.port);
  const latencies: number[] = [];
  let errors = 0;
  let skipped = 0; // open loop: starts dropped because inFlight were outstanding (counted as errors)
  let firstError: string | null = null;
  let n = 0;
  const body = (): Buffer => {
    const pick = opts.pick();
    return frame(
      toBinary(
        CreateReservationRequestSchema,
        create(CreateReservationRequestSchema, {
          userId: pick.buyer,
          items: pick.products.map((productId) => ({ productId, quantity: 1n })),
          idempotencyKey: `${opts.tag}-${n++}`,
        }),
      ),
    );
  };
  const call = (): Promise<void> =>
    new Promise((resolve) => {
      const started = performance.now();
      startCall(
        session,
        PATH,
        opts.token,
        body(),
        () => undefined,
        (end) => {
          latencies.push(performance.now() - started);
          if (end.error !== null) {
            errors++;
            firstError ??= end.error;
          }
          resolve();
        },
      );
    });
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const until = t0 + opts.seconds * 1000;
  if (opts.ratePerSecond === undefined) {
    const worker = async (): Promise<void> => {
      while (performance.now() < until) await call();
    };
    await Promise.all(Array.from({ length: opts.inFlight }, worker));
  } else {
    const interval = 1000 / opts.ratePerSecond;
    const pending = new Set<Promise<void>>();
    for (let k = 0; ; k++) {
      const at = t0 + k * interval;
      if (at >= until) break;
      const wait = at - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      if (pending.size >= opts.inFlight) {
        skipped++;
        continue;
      }
      const p = call().finally(() => pending.delete(p));
      pending.add(p);
    }
    await Promise.all(pending);
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  session.close();
  latencies.sort((a, b) => a - b);
  const at = (q: number) => quantile(latencies, q, 0);
  return {
    calls: latencies.length + skipped,
    errors: errors + skipped,
    firstError,
    seconds,
    p50Ms: at(0.5),
    p99Ms: at(0.99),
    p999Ms: at(0.999),
    maxMs: latencies.at(-1) ?? 0,
    clientCpuMsPerCall: (cpu.user + cpu.system) / 1000 / Math.max(1, latencies.length),
  };
}
