/**
 * `node --import tsx bench/scenarios/list-orders.main.ts [--smoke] [--duration 10] [--warmup 2] [--orders 1000000] [--users 50000] [--json file]`
 * Runs issue 5's scenario 5 (ListOrders at 1M orders on a shard) alone and prints its table and
 * checks, until bench/run.ts runs it. --duration scales the calls per case (at least 10 x duration,
 * then up to 20 x duration within duration / 20 s); --warmup is seconds of calls over every case before measuring. Exit 2 on a consistency violation, 3 on failed calls.
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { LOCAL_POSTGRES } from "../../test/harness/shard-databases.js";
import type { ScenarioContext } from "../lib/scenario.js";
import { runListOrders } from "./list-orders.js";

const { values: args } = parseArgs({
  options: {
    smoke: { type: "boolean", default: false },
    duration: { type: "string" },
    warmup: { type: "string" },
    orders: { type: "string" },
    users: { type: "string" },
    json: { type: "string" },
  },
});
const ctx: ScenarioContext = {
  smoke: args.smoke,
  duration: Number(args.duration ?? (args.smoke ? 1 : 10)),
  warmup: Number(args.warmup ?? (args.smoke ? 0 : 2)),
  pgUrl: process.env.BENCH_POSTGRES_URL ?? LOCAL_POSTGRES,
  say: (msg) => process.stderr.write(`bench: ${msg}\n`),
  cleanups: [],
};
const positive = (name: string, v: string | undefined): number | undefined => {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!(Number.isInteger(n) && n > 0)) throw new Error(`--${name} must be a positive integer (got ${v})`);
  return n;
};
if (!(ctx.duration > 0)) throw new Error(`--duration must be a positive number (got ${args.duration})`);
if (!(ctx.warmup >= 0)) throw new Error(`--warmup must be a number of seconds (got ${args.warmup})`);
const orders = positive("orders", args.orders);
const users = positive("users", args.users);

let exitCode = 0;
try {
  const result = await runListOrders(ctx, {
    ...(orders !== undefined && { orders }),
    ...(users !== undefined && { users }),
  });
  process.stdout.write(`${result.table}\n\n`);
  for (const c of result.checks)
    process.stdout.write(`${c.met ? "met" : "NOT met"}: ${c.target}: ${c.measured}\n`);
  if (args.json) writeFileSync(args.json, `${JSON.stringify(result, null, 2)}\n`);
  exitCode = result.violations > 0 ? 2 : result.errors > 0 ? 3 : 0;
} catch (e) {
  ctx.say(`failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  exitCode = 1;
} finally {
  for (const c of ctx.cleanups.reverse()) await c().catch((e: unknown) => ctx.say(`cleanup: ${String(e)}`));
}
process.exit(exitCode);
