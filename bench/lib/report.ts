import { readFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import type { LoadResult } from "./grpc-load.js";
import type { TargetCheck } from "./scenario.js";

/** One measured row: a target under one load, with its server's CPU and memory. */
export interface Row extends LoadResult {
  scenario: string;
  target: string;
  protocol: string;
  /** The offered load, e.g. "64 in flight" or "200/s open loop". */
  load: string;
  callsPerSecond: number;
  serverCpuMsPerCall: number;
  /** CPU of all postgres processes per call, ms. */
  postgresCpuMsPerCall: number;
  /** Share of the machine's CPU time that was busy during the measurement, 0-1. */
  machineBusy: number;
  rssMiB: number;
  /** callsPerSecond / the bare limit's, filled in at the end. */
  ratioToBare: number;
  invariantViolations: number;
}

export function machine() {
  const model = /model name\s*:\s*(.*)/.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "unknown";
  return { nproc: cpus().length, cpuModel: model, memoryGiB: +(totalmem() / 2 ** 30).toFixed(1) };
}

const perCall = (ms: number) => (Number.isFinite(ms) ? ms.toFixed(3) : "-");

const COLUMNS: [string, (r: Row) => string][] = [
  ["scenario", (r) => r.scenario],
  ["target", (r) => r.target],
  ["protocol", (r) => r.protocol],
  ["load", (r) => r.load],
  ["calls/s", (r) => r.callsPerSecond.toFixed(0)],
  ["p50 ms", (r) => r.p50Ms.toFixed(2)],
  ["p99 ms", (r) => r.p99Ms.toFixed(2)],
  // "-" where there is no per-row figure: wrk reports no client CPU, and rows measured side by
  // side share their server's (and Postgres') CPU.
  ["srv CPU ms/call", (r) => perCall(r.serverCpuMsPerCall)],
  ["pg CPU ms/call", (r) => perCall(r.postgresCpuMsPerCall)],
  ["load CPU ms/call", (r) => perCall(r.clientCpuMsPerCall)],
  ["box busy", (r) => `${(r.machineBusy * 100).toFixed(0)}%`],
  ["RSS MiB", (r) => r.rssMiB.toFixed(0)],
  ["x bare", (r) => (Number.isFinite(r.ratioToBare) ? r.ratioToBare.toFixed(2) : "-")],
  ["errors", (r) => String(r.errors)],
  ["violations", (r) => String(r.invariantViolations)],
];

/** A plain-text table with padded columns (also valid Markdown). */
export function markdownTable(header: string[], rows: string[][]): string {
  const cells = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...cells.map((c) => (c[i] ?? "").length)));
  const line = (c: string[]) => `| ${widths.map((w, i) => (c[i] ?? "").padEnd(w)).join(" | ")} |`;
  return [line(header), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...rows.map(line)].join("\n");
}

/** The scenarios' rows as a table. */
export function table(rows: Row[]): string {
  return markdownTable(
    COLUMNS.map(([h]) => h),
    rows.map((r) => COLUMNS.map(([, f]) => f(r))),
  );
}

/** The targets against this run's measurements. */
export function targetTable(checks: TargetCheck[]): string {
  return markdownTable(
    ["scenario", "target", "measured (this run)", "verdict"],
    checks.map((c) => [c.scenario, c.target, c.measured, c.met ? "met" : "NOT met"]),
  );
}
