/**
 * Scenario 5's gRPC client and its measurement: node:http2 over h2c and protobuf-es, no gRPC library
 * (its own cost per call is reported), one call in flight, so a latency is the call's and not a
 * queue's. Server CPU from /proc; Postgres CPU of the shard database's backends only (other work on
 * the same Postgres server is not counted).
 */
import type { ClientHttp2Session } from "node:http2";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  type ListOrdersRequest,
  ListOrdersRequestSchema,
  type ListOrdersResponse,
  ListOrdersResponseSchema,
} from "../../gen/shop/order/v1/order_pb.js";
import { frame, startCall } from "../lib/h2-grpc.js";
import { machineCpu, postgresCpu, type ServerProcess } from "../lib/processes.js";
import { quantile } from "../lib/quantile.js";

const PATH = "/shop.order.v1.OrderService/ListOrders";

export interface CallResult {
  ms: number;
  res: ListOrdersResponse | null;
  error: string | null;
}

/** One ListOrders call: encode, send, read the one message and the trailers, decode. */
export async function listOrders(
  session: ClientHttp2Session,
  bearer: string,
  req: ListOrdersRequest,
): Promise<CallResult> {
  const raw = await call(session, bearer, req);
  if (raw.payload === null) return { ms: raw.ms, res: null, error: raw.error };
  return { ms: raw.ms, res: fromBinary(ListOrdersResponseSchema, raw.payload), error: null };
}

/**
 * One timed ListOrders call that does not decode the response: it only counts the orders in it (the
 * top-level field 1 entries). Decoding every response made the client allocate about 60 KB per call,
 * which survived its minor GCs (a per-call http2 stream's objects outlive a scavenge), so the
 * client's own 20-30 ms scavenges showed up in the measured latencies.
 */
export async function timedListOrders(
  session: ClientHttp2Session,
  bearer: string,
  req: ListOrdersRequest,
): Promise<{ ms: number; orders: number; error: string | null }> {
  const raw = await call(session, bearer, req);
  return { ms: raw.ms, orders: raw.payload ? countField1(raw.payload) : 0, error: raw.error };
}

/** The number of top-level field-1 entries of a protobuf message, by walking its tags. */
export function countField1(bytes: Uint8Array): number {
  let pos = 0;
  const varint = (): number => {
    let v = 0;
    for (let shift = 0; ; shift += 7) {
      const b = bytes[pos++];
      if (b === undefined) throw new Error("truncated protobuf message");
      v += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return v;
    }
  };
  let n = 0;
  while (pos < bytes.length) {
    const tag = varint();
    const wire = tag % 8;
    if (wire === 0) varint();
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      const len = varint();
      if (Math.floor(tag / 8) === 1) n++;
      pos += len;
    } else throw new Error(`unexpected wire type ${wire}`);
  }
  if (pos !== bytes.length) throw new Error("truncated protobuf message");
  return n;
}

interface RawResult {
  ms: number;
  /** The one response message's bytes, or null when the call failed. */
  payload: Uint8Array | null;
  error: string | null;
}

function call(session: ClientHttp2Session, bearer: string, req: ListOrdersRequest): Promise<RawResult> {
  const body = frame(toBinary(ListOrdersRequestSchema, req));
  return new Promise((resolve) => {
    const started = performance.now();
    let payload: Uint8Array | null = null;
    startCall(
      session,
      PATH,
      bearer,
      body,
      (msg) => {
        payload = msg;
      },
      (end) => {
        const ms = performance.now() - started;
        if (end.error !== null) return resolve({ ms, payload: null, error: end.error });
        resolve({ ms, payload: payload ?? new Uint8Array(), error: null });
      },
    );
  });
}

export interface Measured {
  calls: number;
  errors: number;
  firstError: string | null;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Every call's latency, ms (sorted): the pooled percentiles over all cases come from these. */
  samples: number[];
  serverCpuMsPerCall: number;
  postgresCpuMsPerCall: number;
  clientCpuMsPerCall: number;
  ordersPerPage: number;
  /** Share of the machine's CPU time that was busy meanwhile, 0-1 (others' work shows here). */
  machineBusy: number;
}

/** CPU ms so far of the given Postgres backends (a backend that started since counts from 0). */
function backendsCpu(pids: Set<string>): Map<string, number> {
  return new Map([...postgresCpu()].filter(([pid]) => pids.has(pid)));
}

/**
 * Sequential calls, one in flight: `calls` of them, or fewer once `seconds` have passed (but at least
 * `minCalls`). `next(i)` builds the i-th request; `backends()` lists the shard's backend pids.
 */
export async function measure(opts: {
  session: ClientHttp2Session;
  bearer: string;
  server: ServerProcess;
  backends: () => Promise<Set<string>>;
  next: (i: number) => ListOrdersRequest;
  calls: number;
  minCalls: number;
  seconds: number;
}): Promise<Measured> {
  const latencies: number[] = [];
  let errors = 0;
  let orders = 0;
  let firstError: string | null = null;
  const pids = await opts.backends();
  const [srv0, pg0, cpu0, box0] = [opts.server.cpuMs(), backendsCpu(pids), process.cpuUsage(), machineCpu()];
  const until = performance.now() + opts.seconds * 1000;
  for (let i = 0; i < opts.calls && (i < opts.minCalls || performance.now() < until); i++) {
    const r = await timedListOrders(opts.session, opts.bearer, opts.next(i));
    latencies.push(r.ms);
    if (r.error !== null) {
      errors++;
      firstError ??= r.error;
    } else orders += r.orders;
  }
  const [cpu, box] = [process.cpuUsage(cpu0), machineCpu()];
  const serverMs = opts.server.cpuMs() - srv0;
  for (const pid of await opts.backends()) pids.add(pid);
  let pgMs = 0;
  for (const [pid, ms] of backendsCpu(pids)) pgMs += ms - (pg0.get(pid) ?? 0);
  const n = latencies.length;
  latencies.sort((a, b) => a - b);
  const at = (q: number) => quantile(latencies, q, 0);
  return {
    calls: n,
    errors,
    firstError,
    p50Ms: at(0.5),
    p99Ms: at(0.99),
    maxMs: latencies[n - 1] ?? 0,
    samples: latencies,
    serverCpuMsPerCall: serverMs / Math.max(1, n),
    postgresCpuMsPerCall: pgMs / Math.max(1, n),
    clientCpuMsPerCall: (cpu.user + cpu.system) / 1000 / Math.max(1, n),
    ordersPerPage: orders / Math.max(1, n - errors),
    machineBusy: (box.busyMs - box0.busyMs) / Math.max(1, box.totalMs - box0.totalMs),
  };
}
