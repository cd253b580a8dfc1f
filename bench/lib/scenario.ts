import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { LOCAL_POSTGRES } from "../../test/harness/shard-databases.js";

/**
 * What a bench scenario module gets from bench/run.ts and gives back. Each scenario brings up what it
 * needs beyond this (its own databases, Redis nodes, server processes) and registers their teardown
 * in `cleanups`, which run.ts runs in reverse order at the end, also on failure.
 */
export interface ScenarioContext {
  /** --smoke: a few seconds in all, tiny data; the numbers mean nothing, the code paths run. */
  smoke: boolean;
  /** Seconds of measurement per load step (already scaled down under --smoke). */
  duration: number;
  /** Seconds of warm-up load before each measured step (0: none). */
  warmup: number;
  /** Postgres server URL to create databases on (trust auth), e.g. postgres://postgres@127.0.0.1:5432/postgres. */
  pgUrl: string;
  /** Progress lines to stderr ("bench: ..."). */
  say(msg: string): void;
  cleanups: (() => Promise<unknown>)[];
}

/** A target of issue 5 checked against what the run measured. */
export interface TargetCheck {
  scenario: string;
  /** The target as the issue states it, e.g. "ListOrders p99 <= 10 ms at 1M orders". */
  target: string;
  /** What this run measured, e.g. "p99 4.2 ms (worst: status filter, total sort)". */
  measured: string;
  met: boolean;
}

/** What a scenario module returns. */
export interface ScenarioResult {
  /** Plain-text Markdown table(s) of this scenario's measurements, printed as they are. */
  table: string;
  /** Everything measured, for bench/results/<timestamp>.json. */
  data: unknown;
  checks: TargetCheck[];
  /** Stock invariant / consistency violations found (the run exits 2 if any). */
  violations: number;
  /** Failed calls (the run exits 3 if any). */
  errors: number;
}

type Flags = Record<string, string | boolean | undefined>;

/**
 * A scenario driver run on its own (bench/scenarios/*.main.ts): parses the common flags (--smoke,
 * --duration, --warmup, --json) and the driver's `own`, builds the context, runs the scenario,
 * prints its table and checks, writes `json(result)` to --json's file, runs the cleanups and exits:
 * 2 on a consistency violation, 3 on failed calls, 1 if the scenario itself failed.
 */
export async function runAlone(
  own: Record<string, { type: "string" } | { type: "boolean"; default: boolean }>,
  smokeWarmup: number,
  run: (ctx: ScenarioContext, flags: Flags) => Promise<ScenarioResult>,
  json: (result: ScenarioResult) => unknown = (result) => result,
): Promise<never> {
  const { values } = parseArgs({
    options: {
      smoke: { type: "boolean", default: false },
      duration: { type: "string" },
      warmup: { type: "string" },
      json: { type: "string" },
      ...own,
    },
  });
  const flags = values as Flags;
  const smoke = flags.smoke === true;
  const ctx: ScenarioContext = {
    smoke,
    duration: Number(flags.duration ?? (smoke ? 1 : 10)),
    warmup: Number(flags.warmup ?? (smoke ? smokeWarmup : 2)),
    pgUrl: process.env.BENCH_POSTGRES_URL ?? LOCAL_POSTGRES,
    say: (msg) => process.stderr.write(`bench: ${msg}\n`),
    cleanups: [],
  };
  if (!(ctx.duration > 0)) throw new Error(`--duration must be a positive number (got ${flags.duration})`);
  if (!(ctx.warmup >= 0)) throw new Error(`--warmup must be a number of seconds >= 0 (got ${flags.warmup})`);
  let exitCode = 0;
  try {
    const result = await run(ctx, flags);
    process.stdout.write(`${result.table}\n\n`);
    for (const c of result.checks)
      process.stdout.write(`${c.met ? "met" : "NOT met"}: ${c.target}: ${c.measured}\n`);
    if (typeof flags.json === "string")
      writeFileSync(flags.json, `${JSON.stringify(json(result), null, 2)}\n`);
    exitCode = result.violations > 0 ? 2 : result.errors > 0 ? 3 : 0;
  } catch (e) {
    ctx.say(`failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    exitCode = 1;
  } finally {
    for (const c of ctx.cleanups.reverse()) await c().catch((e: unknown) => ctx.say(`cleanup: ${String(e)}`));
  }
  process.exit(exitCode);
}
