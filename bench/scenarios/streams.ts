/**
 * Issue 5, scenario 6: 10k order watchers over two instances on the same shards and Redis nodes;
 * status changes at a bounded rate, mostly through instance A; every event's delivery latency (arrival
 * at the watcher - request sent), split by whether the watcher sits on the instance that made the
 * change. Every watcher must get every change of its orders exactly once, in version order.
 */
import type { ClientHttp2Session } from "node:http2";
import { availableParallelism, loadavg } from "node:os";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { setTimeout as delay } from "node:timers/promises";
import { create, toBinary } from "@bufbuild/protobuf";
import { pino } from "pino";
import {
  CreateOrderRequestSchema,
  CreateOrderResponseSchema,
  OrderStatus,
  UpdateOrderStatusRequestSchema,
  UpdateOrderStatusResponseSchema,
} from "../../gen/shop/order/v1/order_pb.js";
import { choosePort } from "../../src/embedded/processes.js";
import { inventoryEntities } from "../../src/inventory/inventory.entity.js";
import { checkOrders } from "../../src/order/order-check.js";
import { openShards } from "../../src/shard/shards.js";
import { testAuthEnv, token, userToken } from "../../test/harness/auth.js";
import { migrateShards } from "../../test/harness/global-setup.js";
import { startRedisNodes } from "../../test/harness/redis-nodes.js";
import { createShardDatabases, dropShardDatabases } from "../../test/harness/shard-databases.js";
import { machineCpu, type ServerProcess, startServer } from "../lib/processes.js";
import type { ScenarioContext, ScenarioResult } from "../lib/scenario.js";
import { seedProducts } from "../lib/seed.js";
import { frame, openSession, unary } from "./streams-client.js";
import { report, type StreamsData } from "./streams-report.js";
import {
  account,
  type Change,
  changesByOrder,
  closeWatchers,
  expectedDeliveries,
  openWatchers,
  type WatchTarget,
} from "./streams-watch.js";

const ORD = "/shop.order.v1.OrderService";
/** The moves every order can make after PENDING, in order (TRANSITIONS in src/order/order.model.ts). */
const STEPS = [OrderStatus.CONFIRMED, OrderStatus.PROCESSING, OrderStatus.SHIPPED, OrderStatus.DELIVERED];

export interface StreamsOptions {
  /** V8 CPU profiles of both servers into `<dir>/A` and `<dir>/B` (written when they stop). */
  profileDir?: string;
  /** Overrides of the sizes below, for experiments (e.g. the same changes with no watchers). */
  watchers?: number;
  /** Status changes per second. */
  rate?: number;
}

/** Sizes: full size per issue 5; smoke runs every code path in a few seconds. */
function sizes(ctx: ScenarioContext) {
  const base = ctx.smoke
    ? { watchers: 200, orders: 10, rate: 20, seconds: Math.min(ctx.duration, 1), sessions: 2, wave: 100 }
    : { watchers: 10_000, orders: 250, rate: 50, seconds: ctx.duration, sessions: 10, wave: 1000 };
  // The first changes, for ctx.warmup seconds, are delivered and checked like the others but left out
  // of the latency figures: a fresh process runs UpdateOrderStatus cold (JIT, first queries).
  return { ...base, warmup: Math.min(ctx.warmup, ctx.smoke ? 0.5 : 5) };
}
/** Of the watchers, this share use WatchOrders (a user's stream); the rest WatchOrder on one order. */
const USER_SHARE = 0.1;
/** Every 4th change goes through instance B, the rest through A. */
const VIA_B_EVERY = 4;
/** How long after the last answer a missing delivery is waited for before it counts as missing. */
const SETTLE_MS = 5000;

export async function runStreams(
  ctx: ScenarioContext,
  options: StreamsOptions = {},
): Promise<ScenarioResult> {
  const size = { ...sizes(ctx), ...pick(options, ["watchers", "rate"]) };
  const loadAvgAtStart = loadavg()[0] as number;
  const started = performance.now();
  const shardUrls = await createShardDatabases(ctx.pgUrl, 3, `bench_streams_${process.pid}`);
  ctx.cleanups.push(() => dropShardDatabases(shardUrls));
  await migrateShards(shardUrls);
  const redis = await startRedisNodes(3);
  ctx.cleanups.push(() => redis.stopAll());
  const pairs = await seedProducts(shardUrls, size.orders, 1000);
  const servers = await Promise.all(
    (["A", "B"] as const).map(async (name) => {
      const [port, grpcPort] = [await choosePort(undefined), await choosePort(undefined)];
      const server = await startServer(
        `streams-${name}`,
        "src/main.ts",
        {
          SHARD_URLS: shardUrls.join(","),
          REDIS_URLS: redis.urls.join(","),
          PORT: String(port),
          // The native grpc-js port (src/server/grpc-native.ts) on a free port of its own: two
          // instances on one machine cannot both take the default. The scenario uses PORT.
          GRPC_PORT: String(grpcPort),
          HOST: "127.0.0.1",
          ...testAuthEnv,
          MIGRATE_ON_START: "false",
          RATE_LIMIT_USER_RPS: "0",
          RATE_LIMIT_SERVICE_RPS: "0",
          LOG_LEVEL: "warn",
          DRAIN_TIMEOUT_MS: "1000",
          ...(options.profileDir && {
            NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${options.profileDir}/${name}`,
          }),
        },
        port,
      );
      ctx.cleanups.push(() => server.stop());
      return server;
    }),
  );
  const [a, b] = servers as [ServerProcess, ServerProcess];
  const drivers = [await openSession(a.port), await openSession(b.port)];
  const service = token({ sub: "bench-fulfilment", scopes: ["service"], expiresInS: 3600 });
  const orders = await seedOrders(drivers[0] as ClientHttp2Session, service, pairs);
  ctx.say(`streams: ${orders.length} orders created in ${ms(started)} ms, servers up`);
  const rssBefore = servers.map((s) => s.rssMiB());

  const sessions = await Promise.all(
    servers.map((s) => Promise.all(Array.from({ length: size.sessions }, () => openSession(s.port)))),
  );
  const opening = performance.now();
  const watchers = await openWatchers(targets(orders, size.watchers, service), sessions, size.wave, 30_000);
  const openMs = performance.now() - opening;
  const openOnServer = await Promise.all(servers.map((s) => openStreams(s.port)));
  const rssWatching = servers.map((s) => s.rssMiB());
  ctx.say(
    `streams: ${watchers.length} watchers live in ${openMs.toFixed(0)} ms (server gauges ${openOnServer})`,
  );

  const idleMs = size.seconds * 100;
  const idle0 = servers.map((s) => s.cpuMs());
  await delay(idleMs);
  const idleCpu = servers.map((s, i) => (s.cpuMs() - (idle0[i] as number)) / idleMs);

  // The changes, mostly through A, at a bounded rate; then the deliveries have SETTLE_MS to arrive.
  const cpu0 = servers.map((s) => s.cpuMs());
  const [client0, box0] = [process.cpuUsage(), machineCpu()];
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();
  const rssPeak = [...rssWatching];
  const sampler = setInterval(() => {
    for (const [i, s] of servers.entries()) rssPeak[i] = Math.max(rssPeak[i] ?? 0, s.rssMiB());
  }, 250);
  const driving = performance.now();
  const windowStart = monotonicUs();
  const warmupChanges = Math.round(size.rate * size.warmup);
  const count = warmupChanges + Math.round(size.rate * size.seconds);
  const changes = await drive(drivers, service, orders, count, size.rate, warmupChanges);
  const driveMs = performance.now() - driving;
  const expected = expectedDeliveries(watchers, changesByOrder(changes));
  const received = () => watchers.reduce((n, w) => n + w.events.length, 0);
  const settleUntil = performance.now() + SETTLE_MS;
  while (received() < expected && performance.now() < settleUntil) await delay(20);
  await delay(300); // room for a duplicate to show up
  clearInterval(sampler);
  const windowEnd = monotonicUs();
  loopDelay.disable();
  const cpuMs = servers.map((s, i) => s.cpuMs() - (cpu0[i] as number));
  const [clientCpu, box1] = [process.cpuUsage(client0), machineCpu()];
  const deliveries = account(watchers, changes);
  const endedEarly = watchers.filter((w) => w.ended !== null).length;
  ctx.say(
    `streams: ${changes.length} changes in ${driveMs.toFixed(0)} ms, ${deliveries.delivered}/${expected} delivered`,
  );

  closeWatchers(watchers);
  const leaked = await untilClosed(servers);
  for (const s of [...drivers, ...sessions.flat()]) s.close();
  const violations = await checkShards(shardUrls, ctx);
  const data: StreamsData = {
    size: { ...size, userShare: USER_SHARE, viaBEvery: VIA_B_EVERY, settleMs: SETTLE_MS },
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
      rssPeakMiB: rssPeak[i] as number,
      idleCpuShare: idleCpu[i] as number,
      cpuMs: cpuMs[i] as number,
    })),
    client: {
      cpuMs: (clientCpu.user + clientCpu.system) / 1000,
      loopDelayP99Ms: loopDelay.percentile(99) / 1e6,
      loopDelayMaxMs: loopDelay.max / 1e6,
    },
    machine: {
      busyShare: (box1.busyMs - box0.busyMs) / Math.max(1, box1.totalMs - box0.totalMs),
      nproc: availableParallelism(),
      loadAvgAtStart,
    },
    violations,
    // CLOCK_MONOTONIC µs, the clock of V8 CPU profiles on Linux: cuts the servers' profiles to the run.
    runWindowMonotonicUs: [windowStart, windowEnd],
    totalMs: performance.now() - started,
  };
  return report(data, ctx.smoke);
}

const ms = (since: number) => (performance.now() - since).toFixed(0);
const monotonicUs = () => Number(process.hrtime.bigint() / 1000n);

function pick<T extends object, K extends keyof T>(o: T, keys: K[]): Partial<Pick<T, K>> {
  return Object.fromEntries(keys.filter((k) => o[k] !== undefined).map((k) => [k, o[k]])) as Partial<
    Pick<T, K>
  >;
}

interface SeededOrder {
  id: string;
  buyer: string;
}

/** One order per product, from items, each for the product's buyer (16 calls in flight). */
async function seedOrders(
  session: ClientHttp2Session,
  bearer: string,
  pairs: { buyer: string; product: string }[],
): Promise<SeededOrder[]> {
  const out: SeededOrder[] = [];
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < pairs.length; i = next++) {
      const { buyer, product } = pairs[i] as { buyer: string; product: string };
      const req = create(CreateOrderRequestSchema, {
        userId: buyer,
        source: { case: "items", value: { items: [{ productId: product, quantity: 1n }] } },
        customerEmail: "bench@example.com",
        idempotencyKey: `bench-streams-${process.pid}-${i}`,
      });
      const body = frame(toBinary(CreateOrderRequestSchema, req));
      const r = await unary(session, `${ORD}/CreateOrder`, bearer, body, CreateOrderResponseSchema);
      if (!r.res?.order) throw new Error(`CreateOrder failed: ${r.error}`);
      out[i] = { id: r.res.order.id, buyer };
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  return out;
}

/**
 * Who watches what: (1 - USER_SHARE) of the watchers on single orders, in pairs (one on A, one on B)
 * round-robin over the orders, so each order has as many watchers on A as on B; the rest on users'
 * streams the same way. Browser tabs use the buyer's own token; one order watcher in four is a
 * backend service watching for the buyer with a service token.
 */
function targets(orders: SeededOrder[], total: number, service: string): WatchTarget[] {
  const users = new Map<string, string[]>();
  for (const o of orders) users.set(o.buyer, [...(users.get(o.buyer) ?? []), o.id]);
  const buyerToken = new Map([...users.keys()].map((u) => [u, userToken(u)]));
  const userList = [...users];
  const forUsers = Math.round(total * USER_SHARE);
  const out: WatchTarget[] = [];
  for (let k = 0; k < total - forUsers; k++) {
    const o = orders[Math.floor(k / 2) % orders.length] as SeededOrder;
    const instance = (k % 2) as 0 | 1;
    const bearer = k % 8 >= 6 ? service : (buyerToken.get(o.buyer) as string);
    out.push({ instance, scope: "order", userId: o.buyer, orders: [o.id], bearer });
  }
  for (let k = 0; k < forUsers; k++) {
    const [userId, ids] = userList[Math.floor(k / 2) % userList.length] as [string, string[]];
    const instance = (k % 2) as 0 | 1;
    out.push({ instance, scope: "user", userId, orders: ids, bearer: buyerToken.get(userId) as string });
  }
  return out;
}

/**
 * `count` status changes at `rate` per second, round-robin over the orders (each order moves one
 * step per round), every VIA_B_EVERY-th through B. A change waits for the previous one of its order.
 */
async function drive(
  drivers: ClientHttp2Session[],
  bearer: string,
  orders: SeededOrder[],
  count: number,
  rate: number,
  warmup: number,
): Promise<Change[]> {
  const plan = Array.from({ length: Math.min(count, orders.length * STEPS.length) }, (_, i) => ({
    order: orders[i % orders.length] as SeededOrder,
    step: Math.floor(i / orders.length),
    instance: (i % VIA_B_EVERY === VIA_B_EVERY - 1 ? 1 : 0) as 0 | 1,
  }));
  const version = new Map(orders.map((o) => [o.id, 1]));
  const previous = new Map<string, Promise<unknown>>();
  const changes: Change[] = [];
  const t0 = performance.now();
  const calls: Promise<unknown>[] = [];
  for (const [i, p] of plan.entries()) {
    const wait = t0 + (i * 1000) / rate - performance.now();
    if (wait > 0) await delay(wait);
    const call = (previous.get(p.order.id) ?? Promise.resolve()).then(async () => {
      const req = create(UpdateOrderStatusRequestSchema, {
        orderId: p.order.id,
        status: STEPS[p.step],
        expectedVersion: BigInt(version.get(p.order.id) as number),
        reason: "bench",
        idempotencyKey: `bench-streams-${process.pid}-c${i}`,
      });
      const body = frame(toBinary(UpdateOrderStatusRequestSchema, req));
      const session = drivers[p.instance] as ClientHttp2Session;
      const r = await unary(
        session,
        `${ORD}/UpdateOrderStatus`,
        bearer,
        body,
        UpdateOrderStatusResponseSchema,
      );
      const v = Number(r.res?.order?.version ?? 0);
      if (r.error === null) version.set(p.order.id, v);
      changes.push({
        orderId: p.order.id,
        version: v,
        instance: p.instance,
        warmup: i < warmup,
        sentAt: r.sentAt,
        answeredAt: r.answeredAt,
        error: r.error,
      });
    });
    previous.set(p.order.id, call);
    calls.push(call);
  }
  await Promise.all(calls);
  return changes;
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
