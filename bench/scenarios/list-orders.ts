/**
 * Issue 5, scenario 5: ListOrders with 1M top-level orders on one shard. Every filter and both sorts,
 * in a heavy and a typical buyer's own list and in the operator's list (all users, and by email),
 * first page and deep pages: p50/p99 over sequential gRPC calls to the product server, its CPU and
 * the shard's Postgres CPU per call, and EXPLAIN ANALYZE of each list statement (which index, how
 * many rows read, any Seq Scan or large Sort). The seeded data passes the product's order check
 * (on a sample: see checkOrdersSample).
 */
import type { ClientHttp2Session } from "node:http2";
import { choosePort } from "../../src/embedded/processes.js";
import type { OrderStatus } from "../../src/order/order.model.js";
import { listOrdersStatement } from "../../src/order/order.queries.js";
import type { Shard } from "../../src/shard/shards.js";
import { testAuthEnv } from "../../test/harness/auth.js";
import { migrateShards } from "../../test/harness/global-setup.js";
import { startRedisNodes } from "../../test/harness/redis-nodes.js";
import {
  createShardDatabases,
  dropShardDatabases,
  openTestShards,
} from "../../test/harness/shard-databases.js";
import { openSession } from "../lib/h2-grpc.js";
import { productEnv, type ServerProcess, startServer, waitForPort } from "../lib/processes.js";
import type { ScenarioContext, ScenarioResult } from "../lib/scenario.js";
import { type OrderSeed, seedOrders } from "../lib/seed-orders.js";
import {
  bearers,
  type Case,
  cases,
  filterCondition,
  inListing,
  keyOf,
  type OrderKey,
  PAGE_SIZE,
  query,
  request,
  scopeCondition,
  tokenAfter,
} from "./list-orders-cases.js";
import { checkOrdersSample, checkSeededIds, explain } from "./list-orders-db.js";
import { listOrders, measure } from "./list-orders-measure.js";
import { type CaseRow, checks, table } from "./list-orders-report.js";

export interface ListOrdersOptions {
  /** Top-level orders to seed (default 1M; smoke 5,000) and buyers (default orders / 20). */
  orders?: number;
  users?: number;
}

/** Sizes: issue 5's 1M orders; smoke runs every case and code path on a small shard in seconds. */
function sizes(ctx: ScenarioContext, opts: ListOrdersOptions) {
  const orders = opts.orders ?? (ctx.smoke ? 5_000 : 1_000_000);
  const users = opts.users ?? Math.max(50, Math.round(orders / 20));
  return ctx.smoke
    ? {
        orders,
        users,
        calls: 2,
        warmSeconds: ctx.warmup,
        deepKeys: 2,
        scopeSample: 2000,
        checkUsers: 30,
      }
    : {
        orders,
        users,
        // At the default --duration 10, 400 calls per case: a case's p99 is then its 4th-worst call
        // (nearest rank), so one stall of two or three calls does not decide a case. About 130 s for
        // the 156 cases.
        calls: Math.max(20, Math.round(40 * ctx.duration)),
        // --warmup (default 2 s) or 30 s, whichever is longer: see runCases.
        warmSeconds: Math.max(30, ctx.warmup),
        // Deep pages: 10 random positions of the listing, one h2load run of calls / 10 after each.
        deepKeys: 10,
        // Everyone's orders to pick deep positions from (a rare filter's listing is sampled itself).
        scopeSample: 5000,
        checkUsers: 100,
      };
}

export async function runListOrders(
  ctx: ScenarioContext,
  opts: ListOrdersOptions = {},
): Promise<ScenarioResult> {
  const size = sizes(ctx, opts);
  const urls = await createShardDatabases(ctx.pgUrl, 1, `bench_list_${process.pid}`);
  ctx.cleanups.push(() => dropShardDatabases(urls));
  await migrateShards(urls);
  const seed = await seedOrders(urls[0] as string, { orders: size.orders, users: size.users }, ctx.say);
  ctx.say(`seeded ${seed.rows.topLevel} orders of ${seed.rows.users} buyers in ${seed.seconds} s`);

  const redis = await startRedisNodes(1);
  ctx.cleanups.push(() => redis.stopAll());
  const port = await choosePort(undefined);
  // gRPC callers use the native port (grpc-js); the one port serves the same calls through connect-node.
  const grpcPort = await choosePort(undefined);
  const server = await startServer(
    "product",
    "src/main.ts",
    productEnv({ shardUrls: urls, redisUrls: redis.urls, port, grpcPort, auth: testAuthEnv }),
    port,
  );
  ctx.cleanups.push(() => server.stop());
  await waitForPort(grpcPort, 10_000);
  const shards = await openTestShards(urls);
  ctx.cleanups.push(() => shards.close());
  const shard = shards.shards[0] as Shard;

  const badIds = await checkSeededIds(shard.fork(), 2000);
  const check = await checkOrdersSample(shard, size.checkUsers);
  for (const v of check.violations.slice(0, 5)) ctx.say(`VIOLATION order ${v.orderId}: ${v.problem}`);
  if (badIds > 0) ctx.say(`VIOLATION ${badIds} seeded ids are not what newId makes`);
  ctx.say(
    `checkOrders on ${check.orders} orders of ${size.checkUsers} buyers: ${check.violations.length} violations`,
  );

  const session = await openSession(grpcPort);
  ctx.cleanups.push(async () => session.close());
  const all = cases(Date.parse(seed.createdRange[1]), seed.heavy, seed.typical);
  const rows = await runCases(ctx, all, { session, server, port, grpcPort, shard, seed, size });
  const failed = rows.filter((r) => r.skipped?.startsWith("failed")).length;
  const errors = failed + rows.reduce((n, r) => n + (r.measured?.errors ?? 0), 0);
  for (const r of rows.filter((x) => x.measured?.firstError || x.skipped?.startsWith("failed")).slice(0, 3))
    ctx.say(`errors in ${r.case.scope} / ${r.case.filter}: ${r.measured?.firstError ?? r.skipped}`);
  return {
    table: table(seed, rows),
    data: {
      seed,
      orderCheck: { orders: check.orders, violations: check.violations, badIds },
      size,
      cases: rows,
    },
    checks: checks(seed, rows),
    violations: check.violations.length + badIds,
    errors,
  };
}

interface Env {
  session: ClientHttp2Session;
  server: ServerProcess;
  /** The server's main port, for its /metrics. */
  port: number;
  /** The server's native gRPC port (grpc-js), which h2load calls. */
  grpcPort: number;
  shard: Shard;
  seed: OrderSeed;
  size: ReturnType<typeof sizes>;
}

/** Measures and EXPLAINs every case in turn. */
async function runCases(ctx: ScenarioContext, all: Case[], env: Env): Promise<CaseRow[]> {
  const bearer = bearers();
  const backends = async () =>
    new Set(
      (
        await env.shard
          .fork()
          .execute<{ pid: number }[]>(
            "select pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()",
          )
      ).map((r) => String(r.pid)),
    );
  // Warm-up: every case's first page once, then round after round for warmSeconds (the server's
  // JIT, its connection pool, the caches). After 2 s of it the first cases measured still took
  // 1.5-2x the server CPU per call of the ones after them: 30 s by default.
  const warmUntil = performance.now() + env.size.warmSeconds * 1000;
  for (let round = 0; round === 0 || performance.now() < warmUntil; round++)
    for (const c of all) await listOrders(env.session, bearer(c), request(c));
  const deepKeys = new Map<string, OrderKey[]>();
  const rows: CaseRow[] = [];
  const started = performance.now();
  for (const [i, c] of all.entries()) {
    if (i > 0 && i % 40 === 0)
      ctx.say(
        `list orders: ${i}/${all.length} cases, ${((performance.now() - started) / 1000).toFixed(0)} s`,
      );
    const tag = { scope: c.scope, filter: c.filter.name, sort: c.sort, page: c.page };
    // The server's own token for this listing: deep pages continue from its filter hash.
    const first = await listOrders(env.session, bearer(c), request(c));
    if (first.error !== null) {
      rows.push({ case: tag, measured: null, plan: null, skipped: `failed: ${first.error}` });
      continue;
    }
    let keys: OrderKey[] = [];
    if (c.page === "deep") {
      if (!first.res?.nextPageToken) {
        rows.push({ case: tag, measured: null, plan: null, skipped: "no second page" });
        continue;
      }
      keys = (await scopeSample(env, c, deepKeys)).filter((k) => inListing(c, k)).slice(0, env.size.deepKeys);
      // A rare filter's listing can hold too few of the scope's random sample: sample the listing.
      if (keys.length < env.size.deepKeys)
        keys = (await listingSample(env, c)).filter((k) => inListing(c, k));
      if (keys.length === 0) {
        rows.push({ case: tag, measured: null, plan: null, skipped: "no sampled order in the listing" });
        continue;
      }
    }
    const serverToken = first.res?.nextPageToken ?? "";
    // One h2load run per request: the first page, or each of the deepKeys random positions.
    const requests =
      c.page === "first"
        ? [request(c)]
        : keys.map((k) => request(c, tokenAfter(serverToken, keyOf(c.sort, k))));
    // Each request once through the Node client first: its answer decoded and its orders counted.
    let orders = 0;
    let failedFirst: string | null = null;
    for (const req of requests) {
      const r = await listOrders(env.session, bearer(c), req);
      failedFirst ??= r.error;
      orders += r.res?.orders.length ?? 0;
    }
    if (failedFirst !== null) {
      rows.push({ case: tag, measured: null, plan: null, skipped: `failed: ${failedFirst}` });
      continue;
    }
    const measured = await measure({
      grpcPort: env.grpcPort,
      metricsPort: env.port,
      bearer: bearer(c),
      server: env.server,
      backends,
      requests,
      calls: env.size.calls,
      ordersPerPage: orders / requests.length,
    });
    const after = c.page === "deep" ? keyOf(c.sort, keys[0] as OrderKey) : null;
    const { sql, params } = listOrdersStatement(query(c), after, PAGE_SIZE + 1);
    const plan = await explain(env.shard.fork(), sql, params);
    rows.push({ case: tag, measured, plan, serverGc: measured.serverGc });
  }
  return rows;
}

/**
 * Random top-level orders of the case's scope (all of a buyer's or an email's, a random `scopeSample`
 * of everyone's), cached per scope; each case keeps those in its listing as deep-page positions.
 */
async function scopeSample(env: Env, c: Case, cache: Map<string, OrderKey[]>): Promise<OrderKey[]> {
  const cached = cache.get(c.scope);
  if (cached) return cached;
  const keys = await randomOrders(env, [scopeCondition(c)], env.size.scopeSample);
  cache.set(c.scope, keys);
  return keys;
}

/** `deepKeys` random top-level orders of the case's own listing (its scope and its filters). */
function listingSample(env: Env, c: Case): Promise<OrderKey[]> {
  return randomOrders(env, [scopeCondition(c), filterCondition(c)], env.size.deepKeys);
}

/** Up to `limit` random top-level orders meeting every condition. */
async function randomOrders(
  env: Env,
  conditions: { sql: string; params: unknown[] }[],
  limit: number,
): Promise<OrderKey[]> {
  const rows = await env.shard
    .fork()
    .execute<{ id: string; total_key: string; created_us: string; status: OrderStatus; archived: boolean }[]>(
      `select id, total_minor::text as total_key, status, archived,
         (extract(epoch from created_at) * 1000000)::bigint::text as created_us
       from orders where parent_order_id is null and ${conditions.map((w) => `(${w.sql})`).join(" and ")}
       order by random() limit ?`,
      [...conditions.flatMap((w) => w.params), limit],
    );
  return rows.map((r) => ({
    id: r.id,
    totalKey: r.total_key,
    createdUs: r.created_us,
    status: r.status,
    archived: r.archived,
  }));
}
