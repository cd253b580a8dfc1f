/**
 * `node --import tsx bench/server-ab.ts [--a "<node flags>"] [--b "<node flags>"] [--a-root <dir>] [--b-root <dir>] [--seconds 20] [--orders 50000] [--calls-per-case 20]`
 * (npm run bench:server-ab)
 *
 * Two product servers under ListOrders, side by side in one run, that differ in their Node/V8 flags
 * (--a, --b) or in their code (--a-root, --b-root: another checkout of this repository, e.g. a
 * `git worktree` of an older commit with this one's node_modules linked in). Each runs src/main.ts
 * with --trace-gc, on one seeded shard and one Redis. They are called in turn, one call in flight,
 * by h2load as in scenario 5 (bench/lib/h2load.ts: one h2c connection per run, its first call
 * dropped, every call checked OK against the server's /metrics): round after round, every
 * first-page case of scenario 5 (each scope, filter and sort), `--calls-per-case` calls each,
 * against one server and then the other (which goes first alternates), until each has served
 * `seconds` of calls. So both see the same machine, and a slow minute of it lands on both. Only the
 * GC lines printed while measuring count.
 *
 * Defaults: both run this checkout; B with the product's flags (SERVER_NODE_FLAGS, as `npm start`
 * runs it), A the same without --no-allocation-site-pretenuring (V8's pretenuring on, its default).
 * Reported per server: calls, latency p50/p99/max and calls over 10 ms, server CPU ms per call, and from --trace-gc: scavenges (pause
 * p50/p99/max), old-space growth per scavenge (what the scavenges promoted), and mark-compacts
 * (count, pause sum and max); then B against A. Loopback only; it creates and drops its own
 * database and Redis.
 */
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { toBinary } from "@bufbuild/protobuf";
import { ListOrdersRequestSchema } from "../gen/shop/order/v1/order_pb.js";
import { choosePort } from "../src/embedded/processes.js";
import { SERVER_NODE_FLAGS } from "../src/server/node-flags.js";
import { testAuthEnv } from "../test/harness/auth.js";
import { migrateShards } from "../test/harness/global-setup.js";
import { startRedisNodes } from "../test/harness/redis-nodes.js";
import { createShardDatabases, dropShardDatabases, LOCAL_POSTGRES } from "../test/harness/shard-databases.js";
import { frame, openSession } from "./lib/h2-grpc.js";
import { codesBetween, h2loadGrpc, rpcCodes } from "./lib/h2load.js";
import { productEnv, type ServerProcess, startServer, waitForPort } from "./lib/processes.js";
import { quantile } from "./lib/quantile.js";
import { markdownTable } from "./lib/report.js";
import { seedOrders } from "./lib/seed-orders.js";
import { parseTraceGc } from "./lib/trace-gc.js";
import { bearers, cases, request } from "./scenarios/list-orders-cases.js";
import { listOrders } from "./scenarios/list-orders-measure.js";

const SLOW_MS = 10;
const NO_PRETENURING = "--no-allocation-site-pretenuring";
const words = (flags: string) => flags.split(" ").filter((f) => f !== "");

const { values: args } = parseArgs({
  options: {
    a: { type: "string", default: SERVER_NODE_FLAGS.filter((f) => f !== NO_PRETENURING).join(" ") },
    b: { type: "string", default: SERVER_NODE_FLAGS.join(" ") },
    "a-root": { type: "string" },
    "b-root": { type: "string" },
    seconds: { type: "string", default: "20" },
    orders: { type: "string", default: "50000" },
    "calls-per-case": { type: "string", default: "20" },
  },
});
const seconds = Number(args.seconds);
const orders = Number(args.orders);
if (!(seconds > 0)) throw new Error(`--seconds must be a positive number (got ${args.seconds})`);
if (!(Number.isInteger(orders) && orders >= 1000)) throw new Error(`--orders must be an integer >= 1000`);
const callsPerCase = Number(args["calls-per-case"]);
if (!(Number.isInteger(callsPerCase) && callsPerCase >= 1))
  throw new Error(`--calls-per-case must be a positive integer (got ${args["calls-per-case"]})`);

const variant = (label: string, flags: string, root: string | undefined) => ({
  name: `${label}: ${root ? `${root} ` : ""}${flags || "(no flags)"}`,
  flags: [...words(flags), "--trace-gc"],
  script: root ? resolve(root, "src/main.ts") : "src/main.ts",
});
const VARIANTS = [variant("A", args.a, args["a-root"]), variant("B", args.b, args["b-root"])] as const;

interface Served {
  name: string;
  server: ServerProcess;
  port: number;
  grpcPort: number;
  /** --trace-gc output so far, and where the measured part starts and ends in it. */
  out: { text: string; from: number; to: number };
  latencies: number[];
  cpuMs: number;
  measuredMs: number;
}

const say = (m: string) => process.stderr.write(`bench: ${m}\n`);
const base = process.env.BENCH_POSTGRES_URL ?? LOCAL_POSTGRES;
const cleanups: (() => Promise<unknown>)[] = [];
try {
  const urls = await createShardDatabases(base, 1, `bench_ab_${process.pid}`);
  cleanups.push(() => dropShardDatabases(urls));
  await migrateShards(urls);
  const seed = await seedOrders(urls[0] as string, { orders, users: Math.round(orders / 20) }, say);
  const redis = await startRedisNodes(1);
  cleanups.push(() => redis.stopAll());

  const served: Served[] = [];
  for (const v of VARIANTS) {
    const port = await choosePort(undefined);
    const grpcPort = await choosePort(undefined);
    const out = { text: "", from: 0, to: 0 };
    const server = await startServer(
      v.name,
      v.script,
      productEnv({ shardUrls: urls, redisUrls: redis.urls, port, grpcPort, auth: testAuthEnv }),
      port,
      {
        nodeFlags: v.flags,
        onStdout: (t) => {
          out.text += t;
        },
      },
    );
    cleanups.push(() => server.stop());
    await waitForPort(grpcPort, 10_000);
    served.push({ name: v.name, server, port, grpcPort, out, latencies: [], cpuMs: 0, measuredMs: 0 });
  }

  const firstPages = cases(Date.parse(seed.createdRange[1]), seed.heavy, seed.typical).filter(
    (c) => c.page === "first",
  );
  const bearer = bearers();
  const sessions = await Promise.all(served.map((s) => openSession(s.grpcPort)));
  cleanups.push(async () => {
    for (const s of sessions) s.close();
  });

  say(`warming up both servers: ${firstPages.length} cases, 3 rounds each`);
  for (let round = 0; round < 3; round++)
    for (const session of sessions)
      for (const c of firstPages) await listOrders(session, bearer(c), request(c));

  say(`measuring: ${seconds} s of calls per server, in turns`);
  for (const s of served) s.out.from = s.out.text.length;
  const bodies = firstPages.map((c) => frame(toBinary(ListOrdersRequestSchema, request(c))));
  for (let round = 0; served.some((s) => s.measuredMs < seconds * 1000); round++) {
    const order = round % 2 === 0 ? [0, 1] : [1, 0];
    for (const i of order) {
      const s = served[i];
      if (!s) throw new Error(`no server ${i}`);
      const codes0 = await rpcCodes(s.port, "shop.order.v1.OrderService", "ListOrders");
      const cpu0 = s.server.cpuMs();
      const t0 = performance.now();
      for (const [k, c] of firstPages.entries()) {
        const run = await h2loadGrpc({
          port: s.grpcPort,
          path: "/shop.order.v1.OrderService/ListOrders",
          body: bodies[k] as Uint8Array,
          bearer: bearer(c),
          calls: callsPerCase,
        });
        if (run.failed > 0) throw new Error(`${s.name}: ${run.failed} ListOrders calls without HTTP 200`);
        s.latencies.push(...run.latenciesMs);
      }
      s.measuredMs += performance.now() - t0;
      s.cpuMs += s.server.cpuMs() - cpu0;
      const codes = codesBetween(codes0, await rpcCodes(s.port, "shop.order.v1.OrderService", "ListOrders"));
      const sent = firstPages.length * (callsPerCase + 1);
      if (codes.ok !== sent)
        throw new Error(`${s.name}: the server counted ${JSON.stringify(codes)} of ${sent} calls`);
    }
  }
  for (const s of served) s.out.to = s.out.text.length;
  // A scavenge or marking step that started during the last calls prints after them.
  await new Promise((r) => setTimeout(r, 200));
  for (const s of served) s.out.to = Math.max(s.out.to, s.out.text.length);

  const results = served.map((s) => summarise(s));
  const f = (n: number, d = 2) => (Number.isFinite(n) ? n.toFixed(d) : "-");
  process.stdout.write(
    `\n${orders} top-level orders on one shard; ${firstPages.length} first-page cases per round, ${callsPerCase} calls each from h2load, one call in flight.\n\n`,
  );
  process.stdout.write(
    `${markdownTable(
      [
        "server",
        "calls",
        "p50 ms",
        "p99 ms",
        "max ms",
        `calls > ${SLOW_MS} ms`,
        "server CPU ms/call",
        "scavenges",
        "scavenge p50 ms",
        "scavenge p99 ms",
        "scavenge max ms",
        "old space growth MB/scavenge",
        "mark-compacts",
        "mark-compact ms (sum / max)",
      ],
      results.map((r) => [
        r.name,
        String(r.calls),
        f(r.p50),
        f(r.p99),
        f(r.max),
        String(r.slow),
        f(r.cpuPerCall),
        String(r.scavenges),
        f(r.scavenge.p50),
        f(r.scavenge.p99),
        f(r.scavenge.max),
        f(r.promotedPerScavenge),
        String(r.markCompacts),
        `${f(r.markCompactSum, 1)} / ${f(r.markCompactMax, 1)}`,
      ]),
    )}\n\n`,
  );
  const [a, b] = results as [Summary, Summary];
  process.stdout.write(
    `B against A: old space growth ${f(b.promotedPerScavenge)} vs ${f(a.promotedPerScavenge)} MB per scavenge; ` +
      `mark-compacts ${b.markCompacts} vs ${a.markCompacts}; scavenge pause p50 ${f(b.scavenge.p50)} vs ${f(a.scavenge.p50)} ms, ` +
      `p99 ${f(b.scavenge.p99)} vs ${f(a.scavenge.p99)} ms; calls over ${SLOW_MS} ms ${b.slow} vs ${a.slow}; ` +
      `latency p99 ${f(b.p99 / a.p99)}x; server CPU ${f(b.cpuPerCall / a.cpuPerCall)}x per call\n`,
  );
} finally {
  for (const c of cleanups.reverse()) await c().catch((e: unknown) => say(`cleanup failed: ${String(e)}`));
}

interface Summary {
  name: string;
  calls: number;
  p50: number;
  p99: number;
  max: number;
  slow: number;
  cpuPerCall: number;
  scavenges: number;
  scavenge: { p50: number; p99: number; max: number };
  promotedPerScavenge: number;
  markCompacts: number;
  markCompactSum: number;
  markCompactMax: number;
}

/** Latencies and the measured part of one server's --trace-gc lines. */
function summarise(s: Served): Summary {
  const lat = [...s.latencies].sort((a, b) => a - b);
  const gc = parseTraceGc(s.out.text.slice(s.out.from, s.out.to));
  const pauses = [...gc.scavengePauses];
  const growth = gc.growthPerScavenge;
  const marks = gc.markCompactPauses;
  pauses.sort((a, b) => a - b);
  return {
    name: s.name,
    calls: lat.length,
    p50: quantile(lat, 0.5),
    p99: quantile(lat, 0.99),
    max: lat.at(-1) ?? Number.NaN,
    slow: lat.filter((ms) => ms > SLOW_MS).length,
    // Per call sent: each h2load run's dropped first call was served too.
    cpuPerCall: s.cpuMs / Math.max(1, lat.length * ((callsPerCase + 1) / callsPerCase)),
    scavenges: pauses.length,
    scavenge: { p50: quantile(pauses, 0.5), p99: quantile(pauses, 0.99), max: pauses.at(-1) ?? Number.NaN },
    promotedPerScavenge: growth.length ? growth.reduce((a, b) => a + b, 0) / growth.length : Number.NaN,
    markCompacts: marks.length,
    markCompactSum: marks.reduce((a, b) => a + b, 0),
    markCompactMax: marks.length ? Math.max(...marks) : 0,
  };
}
