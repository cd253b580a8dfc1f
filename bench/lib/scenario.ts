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
