/**
 * Prometheus metrics (prom-client), one Registry per app: several apps in one process (the tests)
 * never share or clash over a metric. Sources that keep their own counts (the sweeper, the shard
 * pools, the watch hub) are read when /metrics is scraped, so the hot paths pay nothing for them.
 */
import { Code } from "@connectrpc/connect";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/** Connection counts of one shard's pool, as the `pg` Pool reports them. */
export interface PoolStats {
  /** Open connections (busy + idle). */
  total: number;
  idle: number;
  /** Callers waiting for a connection because every one is busy and the pool is at its max. */
  waiting: number;
  max: number;
}

/** What the shard gauges read at scrape time (structurally a `Shard`). */
export interface ShardSource {
  readonly index: number;
  pool(): PoolStats;
  queryCount(): number;
}

/** Lock outcomes: "acquired" or why an acquisition failed. */
export type LockOutcome = "acquired" | "contention" | "unavailable" | "deadline_exceeded" | "error";
/** Failures of a lock after it was acquired. */
export type HeldLockFailure = "lost" | "release_failed";

/** The sweeper's monotonic counts since start (structurally `SweepCounts`). */
export interface SweeperSource {
  expired: number;
  failedIntents: number;
  orphanHoldsReleased: number;
  ordersRepaired: number;
  idempotencyRecordsExpired: number;
  passes: number;
  errors: number;
}

/** The app's metrics: the registry plus the hooks the app wires into its parts. */
export interface Metrics {
  readonly registry: Registry;
  /** A call reached the interceptors. */
  rpcStarted(service: string, method: string): void;
  /** A call ended (a stream when its last message went out or it failed) with `code` (undefined: OK). */
  rpcHandled(service: string, method: string, code: Code | undefined, seconds: number): void;
  /** An acquisition of the stock locks ended after `seconds`. */
  lockAcquireEnded(seconds: number, outcome: LockOutcome): void;
  heldLockFailed(reason: HeldLockFailure): void;
  /** Sources read at scrape time; each may be set once the part exists. */
  observeSweeper(counts: SweeperSource): void;
  observeShards(shards: readonly ShardSource[]): void;
  observeWatchStreams(open: () => number): void;
  /** The exposition text and its content type. */
  render(): Promise<{ contentType: string; body: string }>;
}

/** Seconds; from 1 ms unary calls to long watch streams. */
const rpcBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
const lockBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** "InvalidArgument" -> "invalid_argument": the code names of the Connect protocol. */
export function codeLabel(code: Code | undefined): string {
  if (code === undefined) return "ok";
  return Code[code].replace(/[A-Z]/g, (c, i: number) => (i === 0 ? "" : "_") + c.toLowerCase());
}

/** Creates a registry with default process metrics and every shop metric on it. */
export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];

  const rpcStartedTotal = new Counter({
    name: "rpc_server_started_total",
    help: "RPCs started, by service and method.",
    labelNames: ["service", "method"] as const,
    registers,
  });
  const rpcDuration = new Histogram({
    name: "rpc_server_duration_seconds",
    help: "RPC duration until the answer (or a stream's end), by service, method and Connect code.",
    labelNames: ["service", "method", "code"] as const,
    buckets: rpcBuckets,
    registers,
  });
  const lockWait = new Histogram({
    name: "lock_wait_seconds",
    help: "Time spent acquiring the cross-shard stock locks (Redlock), by outcome.",
    labelNames: ["outcome"] as const,
    buckets: lockBuckets,
    registers,
  });
  const lockFailures = new Counter({
    name: "lock_failures_total",
    help: "Stock lock failures: contention, unavailable (no quorum), deadline_exceeded, error, lost, release_failed.",
    labelNames: ["reason"] as const,
    registers,
  });

  let sweeper: SweeperSource | undefined;
  const sweeperSeen = new Map<string, number>();
  const sweeperActions: [label: string, read: (c: SweeperSource) => number][] = [
    ["expired", (c) => c.expired],
    ["failed_intents", (c) => c.failedIntents],
    ["orphan_holds_released", (c) => c.orphanHoldsReleased],
    ["orders_repaired", (c) => c.ordersRepaired],
    ["idempotency_records_expired", (c) => c.idempotencyRecordsExpired],
    ["errors", (c) => c.errors],
    ["passes", (c) => c.passes],
  ];
  new Counter({
    name: "sweeper_actions_total",
    help: "Sweeper work since start: expired, failed_intents, orphan_holds_released, orders_repaired, errors, passes.",
    labelNames: ["action"] as const,
    registers,
    collect() {
      if (!sweeper) return;
      for (const [action, read] of sweeperActions) {
        // The sweeper's counts are monotonic: add what is new since the last scrape.
        const now = read(sweeper);
        const delta = now - (sweeperSeen.get(action) ?? 0);
        sweeperSeen.set(action, now);
        this.inc({ action }, delta);
      }
    },
  });

  let shards: readonly ShardSource[] = [];
  new Gauge({
    name: "shard_pool_connections",
    help: "Postgres connections of this process per shard, by state (used, idle).",
    labelNames: ["shard", "state"] as const,
    registers,
    collect() {
      for (const s of shards) {
        const p = s.pool();
        this.set({ shard: String(s.index), state: "used" }, p.total - p.idle);
        this.set({ shard: String(s.index), state: "idle" }, p.idle);
      }
    },
  });
  new Gauge({
    name: "shard_pool_max_connections",
    help: "Pool size limit per shard (DB_POOL_MAX).",
    labelNames: ["shard"] as const,
    registers,
    collect() {
      for (const s of shards) this.set({ shard: String(s.index) }, s.pool().max);
    },
  });
  new Gauge({
    name: "shard_pool_waiting",
    help: "Queries waiting for a free connection per shard.",
    labelNames: ["shard"] as const,
    registers,
    collect() {
      for (const s of shards) this.set({ shard: String(s.index) }, s.pool().waiting);
    },
  });
  const queriesSeen = new Map<number, number>();
  new Counter({
    name: "shard_queries_total",
    help: "SQL statements sent per shard (transaction control excluded).",
    labelNames: ["shard"] as const,
    registers,
    collect() {
      for (const s of shards) {
        const now = s.queryCount();
        this.inc({ shard: String(s.index) }, now - (queriesSeen.get(s.index) ?? 0));
        queriesSeen.set(s.index, now);
      }
    },
  });

  let openStreams: () => number = () => 0;
  new Gauge({
    name: "watch_streams_open",
    help: "WatchOrder and WatchOrders streams open on this process.",
    registers,
    collect() {
      this.set(openStreams());
    },
  });

  return {
    registry,
    rpcStarted: (service, method) => rpcStartedTotal.inc({ service, method }),
    rpcHandled: (service, method, code, seconds) =>
      rpcDuration.observe({ service, method, code: codeLabel(code) }, seconds),
    lockAcquireEnded(seconds, outcome) {
      lockWait.observe({ outcome }, seconds);
      if (outcome !== "acquired") lockFailures.inc({ reason: outcome });
    },
    heldLockFailed: (reason) => lockFailures.inc({ reason }),
    observeSweeper(counts) {
      sweeper = counts;
    },
    observeShards(list) {
      shards = list;
    },
    observeWatchStreams(open) {
      openStreams = open;
    },
    async render() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}
