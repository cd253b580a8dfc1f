/**
 * `npm run bench [-- --duration 10 --warmup 2 --connections 64 --products 10000 --steps 4 --only 5 --smoke]`
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
import { withPg } from "../src/embedded/pg-client.js";
import { choosePort, which } from "../src/embedded/processes.js";
import { inventoryEntities } from "../src/inventory/inventory.entity.js";
import { checkShardStock } from "../src/inventory/inventory.queries.js";
import { parseId } from "../src/shard/ids.js";
import { contiguousBucketMap } from "../src/shard/router.js";
import { openShards, type ShardSet } from "../src/shard/shards.js";
import { testAuthEnv, token } from "../test/harness/auth.js";
import { migrateShards } from "../test/harness/global-setup.js";
import { startRedisNodes } from "../test/harness/redis-nodes.js";
import { createShardDatabases, dropShardDatabases, LOCAL_POSTGRES } from "../test/harness/shard-databases.js";
import { grpcLoad, type LoadResult, type Pick, uniformPick } from "./lib/grpc-load.js";
import {
  machineCpu,
  postgresCpu,
  postgresCpuSince,
  type ServerProcess,
  startServer,
  waitForPort,
} from "./lib/processes.js";
import { machine, type Row, table, targetTable } from "./lib/report.js";
import type { ScenarioContext, ScenarioResult, TargetCheck } from "./lib/scenario.js";
import { type Pair, seedProducts } from "./lib/seed.js";
import { writePairsFile, wrkLoad } from "./lib/wrk.js";

const { values: args } = parseArgs({
  options: {
    smoke: { type: "boolean", default: false },
    duration: { type: "string" },
    warmup: { type: "string" },
    connections: { type: "string" },
    products: { type: "string" },
    profile: { type: "boolean", default: false },
    "cross-rate": { type: "string" },
    only: { type: "string", multiple: true },
    steps: { type: "string", multiple: true },
  },
});
const smoke = args.smoke;
const opts = {
  duration: Number(args.duration ?? (smoke ? 1 : 10)),
  warmup: Number(args.warmup ?? (smoke ? 1 : 2)),
  connections: Number(args.connections ?? (smoke ? 8 : 64)),
  products: Number(args.products ?? (smoke ? 300 : 10_000)),
  crossRate: Number(args["cross-rate"] ?? 50),
  shards: 3,
};
const only = args.only ?? [];
// Which rows of scenarios 1-4 to run, by scenario prefix (e.g. --steps 4); all when none is given.
const stepFilter = args.steps ?? [];
for (const [name, v] of Object.entries(opts))
  if (!Number.isFinite(v) || v < 0 || (v === 0 && name !== "warmup"))
    throw new Error(`--${name} must be a positive number (got ${v})`);
const crossRate = smoke ? 20 : opts.crossRate;
const openLoad = `${crossRate}/s open loop`;
const sideBySideLoad = `${crossRate}/s open loop each, side by side`;
const say = (msg: string) => process.stderr.write(`bench: ${msg}\n`);

/** One measured load: a target, a protocol, what each call reserves, how many in flight. */
interface Step {
  scenario: string;
  target: string;
  protocol: "gRPC h2c" | "Connect JSON HTTP/1.1";
  server: ServerProcess;
  port: number;
  token: string | null;
  pick: () => Pick;
  inFlight: number;
  /** Open loop at this rate instead of closed loop (gRPC only). */
  ratePerSecond?: number;
  /** The load, as the table shows it. */
  load: string;
  /** Measured for this many times --duration (default 1). */
  durationFactor?: number;
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

  const dbEnv = {
    SHARD_URLS: shardUrls.join(","),
    LOG_LEVEL: "warn",
    // --profile: a V8 CPU profile of each server process, for Chrome DevTools or speedscope.
    ...(args.profile && {
      NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${new URL("./results/profiles/", import.meta.url).pathname}`,
    }),
  };
  const ports: number[] = [];
  for (let i = 0; i < 5; i++) ports.push(await choosePort(undefined));
  const [productPort, productGrpcPort, barePort, naivePort, naiveHttp1Port] = ports as [
    number,
    number,
    number,
    number,
    number,
  ];
  const productServer = await startServer(
    "product",
    "src/main.ts",
    {
      ...dbEnv,
      ...testAuthEnv,
      REDIS_URLS: redis.urls.join(","),
      PORT: String(productPort),
      GRPC_PORT: String(productGrpcPort),
      HOST: "127.0.0.1",
      MIGRATE_ON_START: "false",
      RATE_LIMIT_USER_RPS: "0",
      RATE_LIMIT_SERVICE_RPS: "0",
      DRAIN_TIMEOUT_MS: "1000",
    },
    productPort,
  );
  cleanups.push(() => productServer.stop());
  await waitForPort(productGrpcPort, 10_000);
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
  const grpc = "gRPC h2c" as const;
  const connectJson = "Connect JSON HTTP/1.1" as const;
  // gRPC goes to the native port (grpc-js); the one port serves gRPC through connect-node too.
  const product = { target: "product", server: productServer, port: productGrpcPort, token: bearer };
  const productOnePort = { ...product, target: "product, one port (connect-node)", port: productPort };
  const bareT = { target: "bare limit", server: bare, port: barePort, token: null };
  const naiveT = { target: "naive baseline", server: naive, port: naivePort, token: null };
  const closed = (n: number) => ({ inFlight: n, load: `${n} in flight` });

  // Scenario 3: one hot product (shard 0), bought by buyers of its own shard.
  const byShard = groupByShard(pairs, opts.shards);
  const hot = byShard[0]?.products[0] as string;
  const hotBuyers = byShard[0]?.buyers as string[];
  const hotPick = () => ({ buyer: anyOf(hotBuyers), products: [hot] });
  // Scenario 4: three items per call, on three shards, against three items on the buyer's own shard.
  const crossPick = () => ({
    buyer: anyOf(anyOf(byShard).buyers),
    products: byShard.map((s) => anyOf(s.products)),
  });
  const singlePick = () => {
    const s = anyOf(byShard);
    return { buyer: anyOf(s.buyers), products: distinct(s.products, 3) };
  };
  // Twice the duration: at 50/s, 1000 calls per row, so each p99 is the 10th-worst call, not the 5th.
  const open = { inFlight: 256, ratePerSecond: crossRate, load: openLoad, durationFactor: 2 };

  const uniform = "1 reserve, uniform";
  const steps: Step[] = [
    { scenario: uniform, ...product, protocol: grpc, pick: uniformPick(pairs), ...closed(opts.connections) },
    {
      scenario: uniform,
      ...productOnePort,
      protocol: grpc,
      pick: uniformPick(pairs),
      ...closed(opts.connections),
    },
    {
      scenario: uniform,
      ...productOnePort,
      target: "product",
      protocol: connectJson,
      pick: uniformPick(pairs),
      ...closed(opts.connections),
    },
    {
      scenario: "2 references",
      ...bareT,
      protocol: grpc,
      pick: uniformPick(pairs),
      ...closed(opts.connections),
    },
    {
      scenario: "2 references",
      ...naiveT,
      protocol: grpc,
      pick: uniformPick(pairs),
      ...closed(opts.connections),
    },
    {
      scenario: "2 references",
      ...naiveT,
      port: naiveHttp1Port,
      protocol: connectJson,
      pick: uniformPick(pairs),
      ...closed(opts.connections),
    },
    ...[16, 64, 256].map((n) => ({
      scenario: "3 hot SKU",
      ...product,
      protocol: grpc,
      pick: hotPick,
      ...closed(n),
    })),
    { scenario: "3 hot SKU", ...naiveT, protocol: grpc, pick: hotPick, ...closed(64) },
    {
      scenario: "4 cross-shard",
      ...product,
      target: "product, 3 items on 1 shard",
      protocol: grpc,
      pick: singlePick,
      ...open,
    },
    {
      scenario: "4 cross-shard",
      ...product,
      target: "product, 3 items on 3 shards",
      protocol: grpc,
      pick: crossPick,
      ...open,
    },
  ];

  // Scenario 4 once more with its two rows side by side: run one after the other, a burst of
  // other work on the 2 shared cores can land in one row and not the other, and one stall is
  // a 1000-call row's p99. Here both loads run at once, each at its own rate on its own
  // connection, so whatever the box does lands in both; the target is judged on these rows.
  const crossRows = steps.filter((t) => t.scenario === "4 cross-shard");
  const groups: Step[][] = [...steps.map((t) => [t]), crossRows.map((t) => ({ ...t, load: sideBySideLoad }))];

  const rows: Row[] = [];
  let heldExpected = 0;
  let uncounted = 0;
  for (const [i, group] of groups.entries()) {
    const first = group[0] as Step;
    if (stepFilter.length > 0 && !stepFilter.some((p) => first.scenario.startsWith(p))) continue;
    const load = (t: Step, seconds: number, tag: string): Promise<LoadResult> =>
      t.protocol === grpc
        ? grpcLoad({
            port: t.port,
            pick: t.pick,
            inFlight: t.inFlight,
            seconds,
            token: t.token,
            tag,
            ...(t.ratePerSecond !== undefined && { ratePerSecond: t.ratePerSecond }),
          })
        : wrkLoad({ port: t.port, pairsFile, connections: t.inFlight, seconds, token: t.token, tag });
    const loads = (seconds: number, tag: string) =>
      Promise.all(group.map((t, j) => load(t, seconds, `${tag}${j}`)));
    const tag = `b${started}-${i}`;
    // The open-loop rows measure latency, not throughput: the closed-loop rows before them leave
    // dead rows and WAL behind, and autovacuum or a checkpoint landing in a 50/s row's 1000 calls
    // would be its p99. Vacuum and checkpoint first, as a quiet production shard would be.
    if (first.ratePerSecond !== undefined) {
      for (const shard of shards.shards) await shard.sql("vacuum (analyze)", []);
      await shards.shards[0]?.sql("checkpoint", []);
    }
    // Every warm-up's calls hold stock too: they are counted for the invariant check.
    const warmups: LoadResult[][] = opts.warmup > 0 ? [await loads(opts.warmup, `${tag}w`)] : [];
    // Fresh tables start with no statistics: Postgres plans (and caches, per session, for foreign
    // key checks too) as if they were empty, and a growing table then gets sequential scans until
    // autovacuum's next ANALYZE. A live shard has statistics; give these the same.
    for (const shard of shards.shards) await shard.sql("analyze", []);
    // The open-loop rows warm up again after it: the new statistics make every pooled session plan
    // its statements again, and after the checkpoint each page's first change writes a full page to
    // the WAL. Measured right after the analyze, that burst was a stall of about a second (Postgres
    // busy, the server waiting) at the start of the side-by-side rows: p99 400-1000 ms, p50 as usual.
    if (first.ratePerSecond !== undefined && opts.warmup > 0)
      warmups.push(await loads(opts.warmup, `${tag}a`));
    // Rows of one group share the server: its CPU (and Postgres') is theirs together, not per row.
    const [cpu0, pg0, box0] = [first.server.cpuMs(), postgresCpu(), machineCpu()];
    const results = await loads(opts.duration * (first.durationFactor ?? 1), `${tag}m`);
    const [cpuMs, pgMs, box1] = [first.server.cpuMs() - cpu0, postgresCpuSince(pg0), machineCpu()];
    const check = await checkInvariant(shards);
    for (const [j, t] of group.entries()) {
      const r = results[j] as LoadResult;
      const units = t.pick().products.length; // held per successful call
      const warmedOk = warmups.reduce((sum, w) => sum + ((w[j]?.calls ?? 0) - (w[j]?.errors ?? 0)), 0);
      heldExpected += units * (r.calls - r.errors + warmedOk);
      // wrk drops the calls still in flight when its time is up (each run); the server completes them anyway.
      if (t.protocol !== grpc) uncounted += units * t.inFlight * (1 + warmups.length);
      const ok = r.calls - r.errors;
      const alone = group.length === 1;
      rows.push({
        ...r,
        // One load process runs the group's loads: its CPU is theirs together too.
        clientCpuMsPerCall: alone ? r.clientCpuMsPerCall : Number.NaN,
        scenario: t.scenario,
        target: t.target,
        protocol: t.protocol,
        load: t.load,
        callsPerSecond: ok / r.seconds,
        serverCpuMsPerCall: alone ? cpuMs / Math.max(1, ok) : Number.NaN,
        postgresCpuMsPerCall: alone ? pgMs / Math.max(1, ok) : Number.NaN,
        machineBusy: (box1.busyMs - box0.busyMs) / Math.max(1, box1.totalMs - box0.totalMs),
        rssMiB: t.server.rssMiB(),
        ratioToBare: Number.NaN,
        invariantViolations: check.violations, // the group's one check, after all its loads
      });
      say(
        `${t.scenario} / ${t.target} ${t.protocol} ${t.load}: ${(ok / r.seconds).toFixed(0)} calls/s, p99 ${r.p99Ms.toFixed(1)} ms, ${r.errors} errors${r.firstError ? ` (${r.firstError})` : ""}`,
      );
    }
    if (check.held < heldExpected || check.held > heldExpected + uncounted)
      say(`WARNING ${first.scenario}: held ${check.held}, successful calls so far ${heldExpected}`);
  }
  const bareRate = rows.find((r) => r.target === "bare limit")?.callsPerSecond ?? Number.NaN;
  for (const r of rows) r.ratioToBare = r.callsPerSecond / bareRate;
  const checks = reserveChecks(rows);

  // The reservation servers are done: stop them before the next scenarios start their own
  // (their pools would hold connections Postgres' max_connections needs for those).
  await Promise.all([productServer.stop(), bare.stop(), naive.stop()]);

  const scenarios: [string, (ctx: ScenarioContext) => Promise<ScenarioResult>][] = [
    ["5 ListOrders at scale", async (c) => (await import("./scenarios/list-orders.js")).runListOrders(c)],
    ["6 order streams", async (c) => (await import("./scenarios/streams.js")).runStreams(c)],
  ];
  const results: Record<string, ScenarioResult> = {};
  for (const [name, run] of scenarios) {
    if (only.length > 0 && !only.some((o) => name.startsWith(o))) continue;
    say(`${name}: starting`);
    // Each scenario's databases, servers and Redis nodes go when it ends, before the next starts:
    // a 1M-order database's background work must not land in the next scenario's latencies. Nor
    // the WAL the earlier ones wrote: checkpoint now, not during the next scenario's writes.
    await withPg(pgUrl, (c) => c.query("checkpoint"));
    const own: (() => Promise<unknown>)[] = [];
    cleanups.push(() => runCleanups(own));
    const ctx: ScenarioContext = {
      smoke,
      duration: opts.duration,
      warmup: opts.warmup,
      pgUrl,
      say,
      cleanups: own,
    };
    try {
      const result = await run(ctx);
      results[name] = result;
      checks.push(...result.checks);
    } finally {
      await runCleanups(own);
    }
  }
  checks.push({
    scenario: "all",
    target: "zero invariant violations in every run",
    measured: `${rows.reduce((n, r) => n + r.invariantViolations, 0) + Object.values(results).reduce((n, r) => n + r.violations, 0)} violations`,
    met:
      rows.every((r) => r.invariantViolations === 0) &&
      Object.values(results).every((r) => r.violations === 0),
  });

  process.stdout.write(`${table(rows)}\n\n`);
  for (const [name, r] of Object.entries(results)) process.stdout.write(`### ${name}\n\n${r.table}\n\n`);
  process.stdout.write(`### Targets\n\n${targetTable(checks)}\n`);
  const result = {
    at: new Date(started).toISOString(),
    machine: machine(),
    options: { ...opts, only, steps: stepFilter, smoke },
    rows,
    scenarios: Object.fromEntries(Object.entries(results).map(([k, v]) => [k, v.data])),
    checks,
  };
  if (!smoke) {
    const dir = new URL("./results/", import.meta.url).pathname;
    mkdirSync(dir, { recursive: true });
    const file = `${dir}${result.at.replace(/[:.]/g, "-")}.json`;
    writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
    say(`wrote ${file}`);
  }
  say(`done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  if (rows.some((r) => r.invariantViolations > 0) || Object.values(results).some((r) => r.violations > 0))
    return 2;
  if (rows.some((r) => r.errors > 0 || r.calls === 0) || Object.values(results).some((r) => r.errors > 0))
    return 3;
  return 0;
}

/** Runs and forgets the given cleanups, last registered first; failures are reported, not thrown. */
async function runCleanups(list: (() => Promise<unknown>)[]): Promise<void> {
  for (const c of list.splice(0).reverse()) await c().catch((e: unknown) => say(`cleanup: ${String(e)}`));
}

/** The targets of issue 5 that the reserve steps measure, as ratios from this run. */
function reserveChecks(rows: Row[]): TargetCheck[] {
  const find = (scenario: string, target: string, load?: string, protocol = "gRPC h2c") =>
    rows.find(
      (r) =>
        r.scenario.startsWith(scenario) &&
        r.target === target &&
        r.protocol === protocol &&
        (!load || r.load === load),
    );
  const checks: TargetCheck[] = [];
  const uniform = find("1", "product");
  // Without the bare limit's row (--steps 1 alone) there is no ratio to judge.
  if (uniform && Number.isFinite(uniform.ratioToBare))
    checks.push({
      scenario: "1 reserve, uniform",
      target: "gRPC >= 0.9x the bare limit",
      measured: `${uniform.ratioToBare.toFixed(2)}x (${uniform.callsPerSecond.toFixed(0)}/s)`,
      met: uniform.ratioToBare >= 0.9,
    });
  const [h16, h64, h256, n64] = [
    find("3", "product", "16 in flight"),
    find("3", "product", "64 in flight"),
    find("3", "product", "256 in flight"),
    find("3", "naive baseline", "64 in flight"),
  ];
  if (h64 && n64) {
    const x = h64.callsPerSecond / n64.callsPerSecond;
    checks.push({
      scenario: "3 hot SKU",
      target: ">= 3x the naive baseline at 64 in flight",
      measured: `${x.toFixed(1)}x (${h64.callsPerSecond.toFixed(0)}/s vs ${n64.callsPerSecond.toFixed(0)}/s)`,
      met: x >= 3,
    });
  }
  if (h16 && h256) {
    const x = h256.callsPerSecond / h16.callsPerSecond;
    checks.push({
      scenario: "3 hot SKU",
      target: "at 256 in flight >= 0.9x its own rate at 16",
      measured: `${x.toFixed(2)}x (${h256.callsPerSecond.toFixed(0)}/s vs ${h16.callsPerSecond.toFixed(0)}/s)`,
      met: x >= 0.9,
    });
  }
  // Judged on the side-by-side rows; the rows run one after the other are reported beside them.
  const ratio = (load?: string) => {
    const [single, cross] = [
      find("4", "product, 3 items on 1 shard", load),
      find("4", "product, 3 items on 3 shards", load),
    ];
    return single && cross ? { x: cross.p99Ms / single.p99Ms, single, cross } : null;
  };
  const together = ratio(sideBySideLoad);
  const apart = ratio(openLoad);
  if (together) {
    const { x, single, cross } = together;
    checks.push({
      scenario: "4 cross-shard",
      target: "cross-shard p99 <= 2x single-shard p99",
      measured:
        `side by side ${x.toFixed(2)}x (p99 ${cross.p99Ms.toFixed(1)} ms vs ${single.p99Ms.toFixed(1)} ms)` +
        (apart
          ? `; one after the other ${apart.x.toFixed(2)}x (${apart.cross.p99Ms.toFixed(1)} vs ${apart.single.p99Ms.toFixed(1)} ms)`
          : ""),
      met: x <= 2,
    });
  }
  return checks;
}

function groupByShard(pairs: Pair[], shardCount: number): { buyers: string[]; products: string[] }[] {
  const map = contiguousBucketMap(shardCount);
  const out = Array.from({ length: shardCount }, () => ({
    buyers: [] as string[],
    products: [] as string[],
  }));
  for (const p of pairs) {
    const group = out[map.shardOf(parseId(p.product, "prd", "product").bucket)];
    group?.buyers.push(p.buyer);
    group?.products.push(p.product);
  }
  return out;
}

function anyOf<T>(list: readonly T[]): T {
  return list[Math.floor(Math.random() * list.length)] as T;
}

/** `n` different elements of `list` (which has at least n). */
function distinct<T>(list: readonly T[], n: number): T[] {
  const picked = new Set<T>();
  while (picked.size < n) picked.add(anyOf(list));
  return [...picked];
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
