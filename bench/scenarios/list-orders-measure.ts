/**
 * Scenario 5's gRPC clients and its measurement. The measured calls come from h2load (C, one h2c
 * connection, one call in flight, so a latency is the call's and not a queue's, and the load
 * generator costs the 2 shared cores little); a small node:http2 + protobuf-es client makes the
 * calls whose answers must be read (the server's page token, each request checked once). Server
 * CPU from /proc; Postgres CPU of the shard database's backends only (other work on the same
 * Postgres server is not counted).
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
import { codesBetween, h2loadGrpc, rpcCodesIn } from "../lib/h2load.js";
import { machineCpu, postgresCpu, type ServerProcess } from "../lib/processes.js";
import { quantile } from "../lib/quantile.js";
import { gcBetween, gcTotals, scrapeMetrics } from "../lib/server-gc.js";

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
  /** The load generator's (h2load's) CPU per call. */
  clientCpuMsPerCall: number;
  ordersPerPage: number;
  /** Share of the machine's CPU time that was busy meanwhile, 0-1 (others' work shows here). */
  machineBusy: number;
  /** The server's collections meanwhile, by kind, and their pauses' total (ms). */
  serverGc: { count: Record<string, number>; ms: number };
}

/** CPU ms so far of the given Postgres backends (a backend that started since counts from 0). */
function backendsCpu(pids: Set<string>): Map<string, number> {
  return new Map([...postgresCpu()].filter(([pid]) => pids.has(pid)));
}

const SERVICE = "shop.order.v1.OrderService";

/**
 * Sequential calls from h2load, one in flight: `calls` in all, spread evenly over `requests` (one
 * h2load run each, on its own connection; each run's first call is dropped as the connection's
 * warm-up). The server's /metrics (on `metricsPort`, read once before and once after) must count
 * every call of the runs as OK, or the others are errors; it also gives the server's collections. `backends()` lists the shard's backend pids.
 */
export async function measure(opts: {
  grpcPort: number;
  metricsPort: number;
  bearer: string;
  server: ServerProcess;
  backends: () => Promise<Set<string>>;
  requests: ListOrdersRequest[];
  calls: number;
  /** Orders per page, as the caller counted them on a decoded answer of each request. */
  ordersPerPage: number;
}): Promise<Measured> {
  const latencies: number[] = [];
  let failed = 0;
  let loadCpuMs = 0;
  const perRun = Math.max(1, Math.ceil(opts.calls / opts.requests.length));
  const pids = await opts.backends();
  const metrics0 = await scrapeMetrics(opts.metricsPort);
  const [srv0, pg0, box0] = [opts.server.cpuMs(), backendsCpu(pids), machineCpu()];
  for (const req of opts.requests) {
    const run = await h2loadGrpc({
      port: opts.grpcPort,
      path: PATH,
      body: frame(toBinary(ListOrdersRequestSchema, req)),
      bearer: opts.bearer,
      calls: perRun,
    });
    latencies.push(...run.latenciesMs);
    failed += run.failed;
    loadCpuMs += run.cpuMs;
  }
  const box = machineCpu();
  const serverMs = opts.server.cpuMs() - srv0;
  for (const pid of await opts.backends()) pids.add(pid);
  let pgMs = 0;
  for (const [pid, ms] of backendsCpu(pids)) pgMs += ms - (pg0.get(pid) ?? 0);
  const metrics = await scrapeMetrics(opts.metricsPort);
  const codes = codesBetween(
    rpcCodesIn(metrics0, SERVICE, "ListOrders"),
    rpcCodesIn(metrics, SERVICE, "ListOrders"),
  );
  const sent = opts.requests.length * (perRun + 1);
  const notOk = Object.entries(codes).filter(([code]) => code !== "ok");
  const errors = Math.max(failed, sent - (codes.ok ?? 0));
  const n = latencies.length;
  latencies.sort((a, b) => a - b);
  const at = (q: number) => quantile(latencies, q, 0);
  return {
    calls: n,
    errors,
    firstError:
      errors === 0
        ? null
        : `${failed} calls without HTTP 200; the server counted ${codes.ok ?? 0} OK of ${sent}` +
          (notOk.length > 0 ? ` (${notOk.map(([c, k]) => `${k} ${c}`).join(", ")})` : ""),
    p50Ms: at(0.5),
    p99Ms: at(0.99),
    maxMs: latencies[n - 1] ?? 0,
    samples: latencies,
    serverCpuMsPerCall: serverMs / Math.max(1, sent),
    postgresCpuMsPerCall: pgMs / Math.max(1, sent),
    clientCpuMsPerCall: loadCpuMs / Math.max(1, sent),
    ordersPerPage: opts.ordersPerPage,
    machineBusy: (box.busyMs - box0.busyMs) / Math.max(1, box.totalMs - box0.totalMs),
    serverGc: gcBetween(gcTotals(metrics0), gcTotals(metrics)),
  };
}
