/**
 * `npm run bench [-- --duration 10 --warmup 2 --connections 64 --products 10000 --smoke]`
 * Issue 5, scenarios 1 and 2: uniform single-shard reservations against the product (gRPC and
 * Connect JSON), the bare limit and the naive baseline, side by side on the same data and load.
 * Brings up its own shard databases, Redis nodes and servers (each server in its own process, for
 * its CPU and RSS), seeds with a bulk loader, checks the stock invariant after every measurement,
 * prints a table and writes bench/results/<timestamp>.json. Exit 2 on an invariant violation,
 * 3 when calls failed.
 */
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { pino } from "pino";
import { choosePort, which } from "../src/embedded/processes.js";
import { inventoryEntities } from "../src/inventory/inventory.entity.js";
import { checkShardStock } from "../src/inventory/inventory.queries.js";
import { openShards, type ShardSet } from "../src/shard/shards.js";
import { testAuthEnv, token } from "../test/harness/auth.js";
import { migrateShards } from "../test/harness/global-setup.js";
import { startRedisNodes } from "../test/harness/redis-nodes.js";
import { createShardDatabases, dropShardDatabases, LOCAL_POSTGRES } from "../test/harness/shard-databases.js";
import { grpcLoad, type LoadResult } from "./lib/grpc-load.js";
import {
  machineCpu,
  postgresCpu,
  postgresCpuSince,
  type ServerProcess,
  startServer,
} from "./lib/processes.js";
import { machine, type Row, table } from "./lib/report.js";
import { seedProducts } from "./lib/seed.js";
import { writePairsFile, wrkLoad } from "./lib/wrk.js";

const { values: args } = parseArgs({
  options: {
    smoke: { type: "boolean", default: false },
    duration: { type: "string" },
    warmup: { type: "string" },
    connections: { type: "string" },
    products: { type: "string" },
    profile: { type: "boolean", default: false },
  },
});
const smoke = args.smoke;
const opts = {
  duration: Number(args.duration ?? (smoke ? 1 : 10)),
  warmup: Number(args.warmup ?? (smoke ? 1 : 2)),
  connections: Number(args.connections ?? (smoke ? 8 : 64)),
  products: Number(args.products ?? (smoke ? 300 : 10_000)),
  shards: 3,
};
for (const [name, v] of Object.entries(opts))
  if (!Number.isFinite(v) || v < 0 || (v === 0 && name !== "warmup"))
    throw new Error(`--${name} must be a positive number (got ${v})`);
const say = (msg: string) => process.stderr.write(`bench: ${msg}\n`);

interface Target {
  scenario: string;
  target: string;
  protocol: "gRPC h2c" | "Connect JSON HTTP/1.1";
  server: ServerProcess;
  port: number;
  token: string | null;
}

const cleanups: (() => Promise<unknown>)[] = [];
let exitCode = 0;
try {
  exitCode = await main();
} catch (e) {
  say(`failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  exitCode = 1;
} finally {
  for (const c of cleanups.reverse()) await c().catch((e: unknown) => say(`cleanup: ${String(e)}`));
}
process.exit(exitCode);

async function main(): Promise<number> {
  const started = Date.now();
  if (!(await which("wrk"))) throw new Error("wrk is not installed (Debian: apt-get install wrk)");
  const pgUrl = process.env.BENCH_POSTGRES_URL ?? LOCAL_POSTGRES;
  const shardUrls = await createShardDatabases(pgUrl, opts.shards, `bench_${process.pid}`);
  cleanups.push(() => dropShardDatabases(shardUrls));
  await migrateShards(shardUrls);
  const redis = await startRedisNodes(3);
  cleanups.push(() => redis.stopAll());
  const pairs = await seedProducts(shardUrls, opts.products, 1_000_000);
  const pairsFile = writePairsFile(pairs);
  cleanups.push(async () => rmSync(pairsFile, { force: true }));
  say(`seeded ${pairs.length} products on ${opts.shards} shards in ${Date.now() - started} ms`);

  const shards = await openShards({
    urls: shardUrls,
    entities: inventoryEntities,
    migrations: [],
    poolMax: 2,
    bucketMap: null,
    logger: pino({ level: "silent" }),
  });
  cleanups.push(() => shards.close());

  const dbEnv = { SHARD_URLS: shardUrls.join(","), LOG_LEVEL: "warn" };
  const [productPort, barePort, naivePort, naiveHttp1Port] = [
    await choosePort(undefined),
    await choosePort(undefined),
    await choosePort(undefined),
    await choosePort(undefined),
  ] as [number, number, number, number];
  const product = await startServer(
    "product",
    "src/main.ts",
    {
      ...dbEnv,
      ...testAuthEnv,
      REDIS_URLS: redis.urls.join(","),
      PORT: String(productPort),
      HOST: "127.0.0.1",
      MIGRATE_ON_START: "false",
      RATE_LIMIT_USER_RPS: "0",
      RATE_LIMIT_SERVICE_RPS: "0",
      DRAIN_TIMEOUT_MS: "1000",
      // --profile: a V8 CPU profile of the product process, for Chrome DevTools or speedscope.
      ...(args.profile && {
        NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${new URL("./results/profiles/", import.meta.url).pathname}`,
      }),
    },
    productPort,
  );
  cleanups.push(() => product.stop());
  const bare = await startServer(
    "bare",
    "bench/references/bare-grpc.ts",
    { ...dbEnv, PORT: String(barePort) },
    barePort,
  );
  cleanups.push(() => bare.stop());
  const naive = await startServer(
    "naive",
    "bench/references/naive-connect.ts",
    { ...dbEnv, PORT: String(naivePort), PORT_HTTP1: String(naiveHttp1Port) },
    naivePort,
  );
  cleanups.push(() => naive.stop());

  // A service token may name any buyer (docs/auth.md), so one token serves every request.
  const bearer = token({ scopes: ["service"], expiresInS: 3600 });
  const uniform = "1 reserve, uniform";
  const refs = "2 references";
  const targets: Target[] = [
    {
      scenario: uniform,
      target: "product",
      protocol: "gRPC h2c",
      server: product,
      port: productPort,
      token: bearer,
    },
    {
      scenario: uniform,
      target: "product",
      protocol: "Connect JSON HTTP/1.1",
      server: product,
      port: productPort,
      token: bearer,
    },
    { scenario: refs, target: "bare limit", protocol: "gRPC h2c", server: bare, port: barePort, token: null },
    {
      scenario: refs,
      target: "naive baseline",
      protocol: "gRPC h2c",
      server: naive,
      port: naivePort,
      token: null,
    },
    {
      scenario: refs,
      target: "naive baseline",
      protocol: "Connect JSON HTTP/1.1",
      server: naive,
      port: naiveHttp1Port,
      token: null,
    },
  ];

  const rows: Row[] = [];
  let heldExpected = 0;
  let uncounted = 0;
  for (const [i, t] of targets.entries()) {
    const load = (seconds: number, tag: string): Promise<LoadResult> =>
      t.protocol === "gRPC h2c"
        ? grpcLoad({ port: t.port, pairs, inFlight: opts.connections, seconds, token: t.token, tag })
        : wrkLoad({ port: t.port, pairsFile, connections: opts.connections, seconds, token: t.token, tag });
    const tag = `b${started}-${i}`;
    const warm = opts.warmup > 0 ? await load(opts.warmup, `${tag}w`) : null;
    const [cpu0, pg0, box0] = [t.server.cpuMs(), postgresCpu(), machineCpu()];
    const r = await load(opts.duration, `${tag}m`);
    const [cpuMs, pgMs, box1] = [t.server.cpuMs() - cpu0, postgresCpuSince(pg0), machineCpu()];
    heldExpected += r.calls - r.errors + (warm ? warm.calls - warm.errors : 0);
    // wrk drops the calls still in flight when its time is up; the server completes them anyway.
    if (t.protocol !== "gRPC h2c") uncounted += opts.connections * (warm ? 2 : 1);
    const check = await checkInvariant(shards);
    if (check.held < heldExpected || check.held > heldExpected + uncounted)
      say(`WARNING ${t.target} ${t.protocol}: held ${check.held}, successful calls so far ${heldExpected}`);
    const ok = r.calls - r.errors;
    rows.push({
      ...r,
      scenario: t.scenario,
      target: t.target,
      protocol: t.protocol,
      callsPerSecond: ok / r.seconds,
      serverCpuMsPerCall: cpuMs / Math.max(1, ok),
      postgresCpuMsPerCall: pgMs / Math.max(1, ok),
      machineBusy: (box1.busyMs - box0.busyMs) / Math.max(1, box1.totalMs - box0.totalMs),
      rssMiB: t.server.rssMiB(),
      ratioToBare: Number.NaN,
      invariantViolations: check.violations,
    });
    say(
      `${t.target} ${t.protocol}: ${(ok / r.seconds).toFixed(0)} calls/s, ${r.errors} errors${r.firstError ? ` (${r.firstError})` : ""}`,
    );
  }
  const bareRate = rows.find((r) => r.target === "bare limit")?.callsPerSecond ?? Number.NaN;
  for (const r of rows) r.ratioToBare = r.callsPerSecond / bareRate;

  process.stdout.write(`${table(rows)}\n`);
  const result = {
    at: new Date(started).toISOString(),
    machine: machine(),
    options: { ...opts, smoke },
    rows,
  };
  if (!smoke) {
    const dir = new URL("./results/", import.meta.url).pathname;
    mkdirSync(dir, { recursive: true });
    const file = `${dir}${result.at.replace(/[:.]/g, "-")}.json`;
    writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
    say(`wrote ${file}`);
  }
  say(`done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  if (rows.some((r) => r.invariantViolations > 0)) return 2;
  if (rows.some((r) => r.errors > 0 || r.calls === 0)) return 3;
  return 0;
}

/** The product's own stock invariant check on every shard, plus the total held (the calls' effect). */
async function checkInvariant(shards: ShardSet): Promise<{ violations: number; held: number }> {
  let violations = 0;
  let held = 0;
  for (const shard of shards.shards) {
    const em = shard.fork();
    const result = await checkShardStock(em, shard.index);
    for (const v of result.violations.slice(0, 5))
      say(`VIOLATION shard=${v.shard} product=${v.productId} ${v.rule}: ${v.detail}`);
    violations += result.violations.length;
    const rows = await em.execute<{ held: string }[]>("select coalesce(sum(held), 0) as held from stock");
    held += Number(rows[0]?.held ?? 0);
  }
  return { violations, held };
}
