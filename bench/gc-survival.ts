/**
 * `node --import tsx bench/gc-survival.ts [--seconds 5]` (npm run bench:gc)
 *
 * Two per-call patterns that made a server's minor GCs slow, each against what the product uses now,
 * side by side in one run. Each variant runs in its own Node process with --trace-gc and the server's
 * Node flags (SERVER_NODE_FLAGS) for `seconds`, one operation at a time:
 * - pg: `await client.query(text, values)` of a 21-row page, with pg's own Client (the promise form,
 *   as kysely and so MikroORM call it) and with the shard pools' CallbackQueryClient
 *   (src/shard/pg-query-client.ts);
 * - signals: a call's signal combined with a long-lived one (the server's shutdown signal), by
 *   `AbortSignal.any` and by `linkSignals` (src/server/signals.ts), with a listener that reaches
 *   20 KB of the call's objects, as a handler's would.
 * Reported per variant: operations/s, old-space growth per scavenge (what the scavenges promoted),
 * and scavenge pause p50/p99/max; then the ratios. Loopback Postgres only; it creates and drops its
 * own database.
 */
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { parseArgs } from "node:util";
import { withPg } from "../src/embedded/pg-client.js";
import { SERVER_NODE_FLAGS } from "../src/server/node-flags.js";
import { linkSignals } from "../src/server/signals.js";
import { CallbackQueryClient } from "../src/shard/pg-query-client.js";
import { LOCAL_POSTGRES } from "../test/harness/shard-databases.js";
import { quantile } from "./lib/quantile.js";
import { markdownTable } from "./lib/report.js";
import { parseTraceGc } from "./lib/trace-gc.js";

const VARIANTS = ["pg Client", "CallbackQueryClient", "AbortSignal.any", "linkSignals"] as const;
type Variant = (typeof VARIANTS)[number];
const PAGE_SQL = `select g as id, md5(g::text) as user_id, 'delivered' as status, g * 100 as total_minor,
  now() as created_at, repeat('x', 400) as lines from generate_series(1, $1::int) g`;

const { values: args } = parseArgs({
  options: { seconds: { type: "string", default: "5" }, child: { type: "string" }, url: { type: "string" } },
});
const seconds = Number(args.seconds);
if (!(seconds > 0)) throw new Error(`--seconds must be a positive number (got ${args.seconds})`);

if (args.child !== undefined) {
  process.stdout.write(`ops ${await runChild(args.child as Variant, args.url ?? "")}\n`);
  process.exit(0);
}

/** One variant's loop; returns the operations done. */
async function runChild(variant: Variant, url: string): Promise<number> {
  const until = performance.now() + seconds * 1000;
  let ops = 0;
  if (variant === "pg Client" || variant === "CallbackQueryClient") {
    const pg = createRequire(import.meta.url)("pg") as { Client: new (c: object) => ClientLike };
    const Client = variant === "pg Client" ? pg.Client : (CallbackQueryClient as unknown as typeof pg.Client);
    const client = new Client({ connectionString: url });
    await client.connect();
    for (; performance.now() < until; ops++) await client.query(PAGE_SQL, [21]);
    await client.end();
    return ops;
  }
  const shutdown = new AbortController();
  for (; performance.now() < until; ops++) {
    const call = new AbortController();
    const objects = Array.from({ length: 400 }, (_, i) => ({ i, name: `line ${i}` }));
    if (variant === "AbortSignal.any") {
      const signal = AbortSignal.any([call.signal, shutdown.signal]);
      signal.addEventListener("abort", () => objects.length, { once: true });
    } else {
      const linked = linkSignals(call.signal, shutdown.signal);
      linked.signal.addEventListener("abort", () => objects.length, { once: true });
      linked.dispose();
    }
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return ops;
}

interface ClientLike {
  connect(): Promise<void>;
  query(text: string, values: unknown[]): Promise<unknown>;
  end(): Promise<void>;
}

interface Measured {
  variant: Variant;
  opsPerSecond: number;
  scavenges: number;
  promotedMbPerScavenge: number;
  pause: { p50: number; p99: number; max: number };
}

/** Runs one variant in a child process with --trace-gc and reads its scavenges. */
function measure(variant: Variant, url: string): Promise<Measured> {
  const child = spawn(
    process.execPath,
    [
      "--trace-gc",
      ...SERVER_NODE_FLAGS,
      "--import",
      "tsx",
      import.meta.filename,
      "--child",
      variant,
      "--seconds",
      String(seconds),
      "--url",
      url,
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  let out = "";
  child.stdout.on("data", (d: Buffer) => {
    out += d.toString();
  });
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code) => {
      if (code !== 0) return reject(new Error(`${variant} exited with ${code}`));
      const ops = Number(/^ops (\d+)$/m.exec(out)?.[1] ?? Number.NaN);
      // The old form of this parse also reset growth at a mark-compact line, as parseTraceGc does.
      const gc = parseTraceGc(out);
      const pauses = [...gc.scavengePauses];
      const growth = gc.growthPerScavenge;
      pauses.sort((a, b) => a - b);
      const at = (q: number) => quantile(pauses, q, 0);
      resolve({
        variant,
        opsPerSecond: ops / seconds,
        scavenges: pauses.length,
        promotedMbPerScavenge: growth.length ? growth.reduce((a, b) => a + b, 0) / growth.length : 0,
        pause: { p50: at(0.5), p99: at(0.99), max: pauses.at(-1) ?? 0 },
      });
    });
  });
}

const base = process.env.BENCH_POSTGRES_URL ?? LOCAL_POSTGRES;
const dbName = `bench_gc_${process.pid}`;
await withPg(base, (c) => c.query(`create database ${dbName}`));
const url = Object.assign(new URL(base), { pathname: `/${dbName}` }).toString();
const results: Measured[] = [];
try {
  for (const v of VARIANTS) {
    process.stderr.write(`bench: ${v}, ${seconds} s\n`);
    results.push(await measure(v, url));
  }
} finally {
  await withPg(base, (c) => c.query(`drop database if exists ${dbName} with (force)`));
}

const f = (n: number, d = 2) => n.toFixed(d);
process.stdout.write(
  `${markdownTable(
    [
      "variant",
      "ops/s",
      "scavenges",
      "old space growth MB/scavenge",
      "pause p50 ms",
      "pause p99 ms",
      "pause max ms",
    ],
    results.map((r) => [
      r.variant,
      f(r.opsPerSecond, 0),
      String(r.scavenges),
      f(r.promotedMbPerScavenge),
      f(r.pause.p50),
      f(r.pause.p99),
      f(r.pause.max),
    ]),
  )}\n\n`,
);
const by = (v: Variant) => results.find((r) => r.variant === v) as Measured;
for (const [old, now] of [
  ["pg Client", "CallbackQueryClient"],
  ["AbortSignal.any", "linkSignals"],
] as const) {
  const [a, b] = [by(old), by(now)];
  process.stdout.write(
    `${now} against ${old}: ${f(b.opsPerSecond / a.opsPerSecond)}x the operations/s; scavenge pause p99 ${f(b.pause.p99)} vs ${f(a.pause.p99)} ms (${f(a.pause.p99 / Math.max(b.pause.p99, 0.01), 1)}x shorter); promoted ${f(b.promotedMbPerScavenge)} vs ${f(a.promotedMbPerScavenge)} MB per scavenge\n`,
  );
}
