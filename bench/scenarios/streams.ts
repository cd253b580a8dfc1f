/**
 * Issue 5, scenario 6: 10k order watchers over two instances on the same shards and Redis nodes;
 * status changes at a bounded rate, mostly through instance A; every event's delivery latency (arrival
 * at the watcher - request sent), split by whether the watcher sits on the instance that made the
 * change. Every watcher must get every change of its orders exactly once, in version order.
 */
import type { ClientHttp2Session } from "node:http2";
import { availableParallelism, loadavg } from "node:os";
import { constants, monitorEventLoopDelay, PerformanceObserver } from "node:perf_hooks";
import { setTimeout as delay } from "node:timers/promises";
import { pino } from "pino";
import { choosePort } from "../../src/embedded/processes.js";
import { inventoryEntities } from "../../src/inventory/inventory.entity.js";
import { checkOrders } from "../../src/order/order-check.js";
import { openShards } from "../../src/shard/shards.js";
import { testAuthEnv, token } from "../../test/harness/auth.js";
import { migrateShards } from "../../test/harness/global-setup.js";
import { startRedisNodes } from "../../test/harness/redis-nodes.js";
import { createShardDatabases, dropShardDatabases } from "../../test/harness/shard-databases.js";
import { openSession } from "../lib/h2-grpc.js";
import { machineCpu, type ServerProcess, startServer } from "../lib/processes.js";
import type { ScenarioContext, ScenarioResult } from "../lib/scenario.js";
import { type Pair, seedProducts } from "../lib/seed.js";
import { type GcTotals, gcBetween, gcTotals, scrapeMetrics } from "../lib/server-gc.js";
import { account, changesByOrder, expectedDeliveries } from "./streams-deliveries.js";
import { drive, type SeededOrder, seedOrders, targets, USER_SHARE, VIA_B_EVERY } from "./streams-drive.js";
import { report, type StreamsData } from "./streams-report.js";
import { closeWatchers, openWatchers, type Watcher } from "./streams-watch.js";

export interface StreamsOptions {
  /** V8 CPU profiles of both servers into `<dir>/A` and `<dir>/B` (written when they stop). */
  profileDir?: string;
  /** Overrides of the sizes below, for experiments (e.g. the same changes with almost no watchers). */
  watchers?: number;
  /** Status changes per second. */
  rate?: number;
  /**
   * Where the watchers connect: "main" (default: the one port, connect-node, as browsers and
   * `buf curl` do) or "native" (GRPC_PORT, @grpc/grpc-js, as internal services may). The status
   * changes always go through the main port.
   */
  watchPort?: "main" | "native";
}

type Size = ReturnType<typeof sizes>;

/** Sizes: full size per issue 5; smoke runs every code path in a few seconds. */
function sizes(ctx: ScenarioContext, options: StreamsOptions) {
  const base = ctx.smoke
    ? { watchers: 200, orders: 10, rate: 20, seconds: Math.min(ctx.duration, 1), sessions: 2, wave: 100 }
    : { watchers: 10_000, orders: 250, rate: 50, seconds: ctx.duration, sessions: 10, wave: 1000 };
  return {
    ...base,
    ...(options.watchers !== undefined && { watchers: options.watchers }),
    ...(options.rate !== undefined && { rate: options.rate }),
    // The first changes, for ctx.warmup seconds, are delivered and checked like the others but left
    // out of the latency figures: a fresh process runs UpdateOrderStatus cold (JIT, first queries).
    warmup: Math.min(ctx.warmup, ctx.smoke ? 0.5 : 5),
  };
}
/** Sampling interval of the client's event-loop delay histogram, ms. */
const LOOP_DELAY_RESOLUTION_MS = 10;
/** How long after the last answer a missing delivery is waited for before it counts as missing. */
const SETTLE_MS = 5000;

/**
 * Brings up shards, Redis and instances A and B, creates the orders, opens every watcher, measures
 * the instances idle, drives the changes, then closes everything and checks the orders.
 */
export async function runStreams(
  ctx: ScenarioContext,
  options: StreamsOptions = {},
): Promise<ScenarioResult> {
  const size = sizes(ctx, options);
  const [started, loadAvgAtStart] = [performance.now(), loadavg()[0] as number];
  const { shardUrls, pairs, servers, grpcPorts } = await bringUp(ctx, size.orders, options.profileDir);
  const watchPort = options.watchPort ?? "main";
  const drivers = await Promise.all(servers.map((s) => openSession(s.port)));
  const service = token({ sub: "bench-fulfilment", scopes: ["service"], expiresInS: 3600 });
  const orders = await seedOrders(drivers[0] as ClientHttp2Session, service, pairs);
  ctx.say(
    `streams: ${orders.length} orders created, servers up in ${(performance.now() - started).toFixed(0)} ms`,
  );
  const rssBefore = servers.map((s) => s.rssMiB());

  const sessions = await Promise.all(
    servers.map((s, i) =>
      Promise.all(
        Array.from({ length: size.sessions }, () =>
          openSession(watchPort === "native" ? (grpcPorts[i] as number) : s.port),
        ),
      ),
    ),
  );
  const opening = performance.now();
  const watchers = await openWatchers(targets(orders, size.watchers, service), sessions, size.wave, 30_000);
  const openMs = performance.now() - opening;
  const openOnServer = await Promise.all(servers.map((s) => openStreams(s.port)));
  const rssWatching = servers.map((s) => s.rssMiB());
  ctx.say(
    `streams: ${watchers.length} watchers live in ${openMs.toFixed(0)} ms (server gauges ${openOnServer})`,
  );
  const idleCpu = await cpuShares(servers, size.seconds * 100);

  const run = await measureRun(servers, rssWatching, () =>
    driveAndSettle(drivers, service, orders, watchers, size),
  );
  const deliveries = account(watchers, run.changes);
  const endedEarly = watchers.filter((w) => w.ended !== null).length;
  ctx.say(`streams: ${run.changes.length} changes, ${deliveries.delivered}/${deliveries.expected} delivered`);

  closeWatchers(watchers);
  const leaked = await untilClosed(servers);
  for (const s of [...drivers, ...sessions.flat()]) s.close();
  const violations = await checkShards(shardUrls, ctx);
  const { changes, driveMs } = run;
  const data: StreamsData = {
    size: { ...size, userShare: USER_SHARE, viaBEvery: VIA_B_EVERY, settleMs: SETTLE_MS },
    watchPort,
    watchers: { total: watchers.length, users: watchers.filter((w) => w.scope === "user").length, openMs },
    openOnServer,
    changes: {
      made: changes.length,
      warmup: changes.filter((c) => c.warmup).length,
      failed: changes.filter((c) => c.error !== null).length,
      firstError: changes.find((c) => c.error !== null)?.error ?? null,
      viaB: changes.filter((c) => c.instance === 1).length,
      driveMs,
    },
    deliveries,
    endedEarly,
    leaked,
    servers: servers.map((s, i) => ({
      name: s.name,
      watchers: watchers.filter((w) => w.instance === i).length,
      delivered: watchers.reduce((n, w) => n + (w.instance === i ? w.events.length : 0), 0),
      rssBeforeMiB: rssBefore[i] as number,
      rssWatchingMiB: rssWatching[i] as number,
      rssPeakMiB: run.rssPeakMiB[i] as number,
      idleCpuShare: idleCpu[i] as number,
      cpuMs: run.cpuMs[i] as number,
      gc: run.serverGc[i] as { count: Record<string, number>; ms: number },
    })),
    client: run.client,
    machine: { ...run.machine, nproc: availableParallelism(), loadAvgAtStart },
    violations,
    runWindowMonotonicUs: run.windowMonotonicUs,
    totalMs: performance.now() - started,
  };
  return report(data, ctx.smoke);
}

/** Three shard databases, three Redis nodes, products, and instances A and B on all of them. */
async function bringUp(ctx: ScenarioContext, products: number, profileDir: string | undefined) {
  const shardUrls = await createShardDatabases(ctx.pgUrl, 3, `bench_streams_${process.pid}`);
  ctx.cleanups.push(() => dropShardDatabases(shardUrls));
  await migrateShards(shardUrls);
  const redis = await startRedisNodes(3);
  ctx.cleanups.push(() => redis.stopAll());
  const pairs: Pair[] = await seedProducts(shardUrls, products, 1000);
  const grpcPorts: number[] = [];
  const servers = await Promise.all(
    (["A", "B"] as const).map(async (name, i) => {
      const [port, grpcPort] = [await choosePort(undefined), await choosePort(undefined)];
      grpcPorts[i] = grpcPort;
      const env = {
        SHARD_URLS: shardUrls.join(","),
        REDIS_URLS: redis.urls.join(","),
        PORT: String(port),
        // The native grpc-js port (src/server/grpc-native.ts) on a free port of its own: two
        // instances on one machine cannot both take the default. The scenario uses PORT, and
        // GRPC_PORT for the watchers with --watch-port native.
        GRPC_PORT: String(grpcPort),
        HOST: "127.0.0.1",
        ...testAuthEnv,
        MIGRATE_ON_START: "false",
        RATE_LIMIT_USER_RPS: "0",
        RATE_LIMIT_SERVICE_RPS: "0",
        LOG_LEVEL: "warn",
        DRAIN_TIMEOUT_MS: "1000",
        ...(profileDir && { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${profileDir}/${name}` }),
      };
      const server = await startServer(`streams-${name}`, "src/main.ts", env, port);
      ctx.cleanups.push(() => server.stop());
      return server;
    }),
  );
  return { shardUrls, pairs, servers, grpcPorts };
}

/** The changes, then up to SETTLE_MS for their deliveries, then a moment for any duplicate. */
async function driveAndSettle(
  drivers: ClientHttp2Session[],
  service: string,
  orders: SeededOrder[],
  watchers: Watcher[],
  size: Size,
) {
  const warmup = Math.round(size.rate * size.warmup);
  const count = warmup + Math.round(size.rate * size.seconds);
  const driving = performance.now();
  const changes = await drive(drivers, service, orders, count, size.rate, warmup);
  const driveMs = performance.now() - driving;
  const expected = expectedDeliveries(watchers, changesByOrder(changes));
  const received = () => watchers.reduce((n, w) => n + w.events.length, 0);
  const settleUntil = performance.now() + SETTLE_MS;
  while (received() < expected && performance.now() < settleUntil) await delay(20);
  await delay(300);
  return { changes, driveMs };
}

/** Runs `work` and measures around it: servers' CPU and peak RSS, the client, the whole machine. */
async function measureRun<T>(servers: ServerProcess[], rssStart: number[], work: () => Promise<T>) {
  const cpu0 = servers.map((s) => s.cpuMs());
  const [client0, box0, window0] = [process.cpuUsage(), machineCpu(), monotonicUs()];
  const loopDelay = monitorEventLoopDelay({ resolution: LOOP_DELAY_RESOLUTION_MS });
  loopDelay.enable();
  // Whose collections fell in the run: the client's (its pauses delay every arrival it timestamps
  // and every call it times) and the servers' (from their /metrics).
  const clientGc = { pauses: 0, majors: 0, maxMs: 0, totalMs: 0 };
  const gcSeen = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      clientGc.pauses++;
      clientGc.totalMs += e.duration;
      clientGc.maxMs = Math.max(clientGc.maxMs, e.duration);
      const detail = (e as unknown as { detail?: { kind?: number } }).detail;
      if (detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) clientGc.majors++;
    }
  });
  gcSeen.observe({ entryTypes: ["gc"] });
  const serverGc0 = await Promise.all(servers.map(async (s) => gcTotals(await scrapeMetrics(s.port))));
  const rssPeakMiB = [...rssStart];
  const sampler = setInterval(() => {
    for (const [i, s] of servers.entries()) rssPeakMiB[i] = Math.max(rssPeakMiB[i] ?? 0, s.rssMiB());
  }, 250);
  const result = await work().finally(() => {
    clearInterval(sampler);
    loopDelay.disable();
    gcSeen.disconnect();
  });
  const serverGc = await Promise.all(
    servers.map(async (s, i) => gcBetween(serverGc0[i] as GcTotals, gcTotals(await scrapeMetrics(s.port)))),
  );
  const [client, box1] = [process.cpuUsage(client0), machineCpu()];
  // The histogram counts the whole sampling interval: the delay is what comes on top of it.
  const beyond = (ns: number) => Math.max(0, ns / 1e6 - LOOP_DELAY_RESOLUTION_MS);
  return {
    ...result,
    cpuMs: servers.map((s, i) => s.cpuMs() - (cpu0[i] as number)),
    rssPeakMiB,
    client: {
      cpuMs: (client.user + client.system) / 1000,
      loopDelayP99Ms: beyond(loopDelay.percentile(99)),
      loopDelayMaxMs: beyond(loopDelay.max),
      gc: clientGc,
    },
    serverGc,
    machine: { busyShare: (box1.busyMs - box0.busyMs) / Math.max(1, box1.totalMs - box0.totalMs) },
    // CLOCK_MONOTONIC µs, the clock of V8 CPU profiles on Linux: cuts the servers' profiles to the run.
    windowMonotonicUs: [window0, monotonicUs()] as [number, number],
  };
}

const monotonicUs = () => Number(process.hrtime.bigint() / 1000n);

/** Each server's CPU over `ms` of nothing but open watchers, as a share of one core. */
async function cpuShares(servers: ServerProcess[], ms: number): Promise<number[]> {
  const before = servers.map((s) => s.cpuMs());
  await delay(ms);
  return servers.map((s, i) => (s.cpuMs() - (before[i] as number)) / ms);
}

/** The server's watch_streams_open gauge (GET /metrics). */
async function openStreams(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return Number(/^watch_streams_open (\d+)/m.exec(text)?.[1] ?? Number.NaN);
}

/** Waits up to 5 s for both servers' gauges to reach 0; the streams still open then (leaks). */
async function untilClosed(servers: ServerProcess[]): Promise<number[]> {
  const until = performance.now() + 5000;
  for (;;) {
    const open = await Promise.all(servers.map((s) => openStreams(s.port)));
    if (open.every((n) => n === 0) || performance.now() > until) return open;
    await delay(100);
  }
}

/** checkOrders (order totals, payments, one history row per version) on every shard. */
async function checkShards(urls: string[], ctx: ScenarioContext): Promise<number> {
  const shards = await openShards({
    urls,
    entities: inventoryEntities,
    migrations: [],
    poolMax: 1,
    bucketMap: null,
    logger: pino({ level: "silent" }),
  });
  try {
    let violations = 0;
    for (const shard of shards.shards) {
      const found = await checkOrders(shard.fork());
      for (const v of found.slice(0, 5))
        ctx.say(`VIOLATION shard=${shard.index} order=${v.orderId}: ${v.problem}`);
      violations += found.length;
    }
    return violations;
  } finally {
    await shards.close();
  }
}
