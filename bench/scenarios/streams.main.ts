/**
 * `node --import tsx bench/scenarios/streams.main.ts [--smoke] [--duration 10] [--warmup 2] [--profile] [--json file]
 *   [--watchers n] [--rate changes-per-s]`
 * Runs issue 5's scenario 6 (streams) alone and prints its table, until bench/run.ts runs it.
 * --profile writes V8 CPU profiles of both servers under bench/results/profiles/streams-<time>/{A,B};
 * --json writes everything measured (with a per-second timeline of calls and deliveries) to a file.
 * Exit 2 on a consistency violation, 3 on errors (missing, duplicated or reordered deliveries, failed calls).
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { LOCAL_POSTGRES } from "../../test/harness/shard-databases.js";
import type { ScenarioContext } from "../lib/scenario.js";
import { runStreams } from "./streams.js";

const { values: args } = parseArgs({
  options: {
    smoke: { type: "boolean", default: false },
    duration: { type: "string" },
    warmup: { type: "string" },
    profile: { type: "boolean", default: false },
    json: { type: "string" },
    watchers: { type: "string" },
    rate: { type: "string" },
  },
});
const ctx: ScenarioContext = {
  smoke: args.smoke,
  duration: Number(args.duration ?? (args.smoke ? 1 : 10)),
  warmup: Number(args.warmup ?? (args.smoke ? 0.5 : 2)),
  pgUrl: process.env.BENCH_POSTGRES_URL ?? LOCAL_POSTGRES,
  say: (msg) => process.stderr.write(`bench: ${msg}\n`),
  cleanups: [],
};
if (!(ctx.duration > 0)) throw new Error(`--duration must be a positive number (got ${args.duration})`);
if (!(ctx.warmup >= 0)) throw new Error(`--warmup must be a number >= 0 (got ${args.warmup})`);

let exitCode = 0;
try {
  const profileDir = args.profile
    ? new URL(
        `../results/profiles/streams-${new Date().toISOString().replace(/[:.]/g, "-")}`,
        import.meta.url,
      ).pathname
    : undefined;
  const result = await runStreams(ctx, {
    ...(profileDir !== undefined && { profileDir }),
    ...(args.watchers !== undefined && { watchers: Number(args.watchers) }),
    ...(args.rate !== undefined && { rate: Number(args.rate) }),
  });
  process.stdout.write(`${result.table}\n\n`);
  if (args.json) writeFileSync(args.json, `${JSON.stringify(result.data, null, 2)}\n`);
  for (const c of result.checks)
    process.stdout.write(`${c.met ? "met" : "NOT met"}: ${c.target}: ${c.measured}\n`);
  if (profileDir) ctx.say(`CPU profiles under ${profileDir} once the servers stop`);
  exitCode = result.violations > 0 ? 2 : result.errors > 0 ? 3 : 0;
} catch (e) {
  ctx.say(`failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  exitCode = 1;
} finally {
  for (const c of ctx.cleanups.reverse()) await c().catch((e: unknown) => ctx.say(`cleanup: ${String(e)}`));
}
process.exit(exitCode);
