/** Scenario 5's table and target checks. */
import { quantile } from "../lib/quantile.js";
import { markdownTable } from "../lib/report.js";
import type { TargetCheck } from "../lib/scenario.js";
import type { OrderSeed } from "../lib/seed-orders.js";
import type { Case } from "./list-orders-cases.js";
import type { PlanSummary } from "./list-orders-db.js";
import type { Measured } from "./list-orders-measure.js";

export const SCENARIO = "5 ListOrders at 1M orders";
export const P99_TARGET_MS = 10;
/** A Sort node fed more rows than this is "a Sort over a large input". */
export const LARGE_SORT = 1000;

/**
 * One measured case; `skipped` when a deep page does not exist (the first page was the last) or
 * the first call failed ("failed: …", counted as an error).
 */
export interface CaseRow {
  case: Pick<Case, "scope" | "sort" | "page"> & { filter: string };
  measured: Measured | null;
  plan: PlanSummary | null;
  /** The server's collections while the case was measured (from its /metrics), and their pause total. */
  serverGc?: { count: Record<string, number>; ms: number };
  skipped?: string;
}

const COLUMNS: [string, (r: CaseRow) => string][] = [
  ["scope", (r) => r.case.scope],
  ["filter", (r) => r.case.filter],
  ["sort", (r) => r.case.sort],
  ["page", (r) => r.case.page],
  ["calls", (r) => String(r.measured?.calls ?? 0)],
  ["p50 ms", (r) => r.measured?.p50Ms.toFixed(2) ?? "-"],
  [
    "p99 ms",
    (r) =>
      r.measured ? `${r.measured.p99Ms.toFixed(2)}${r.measured.p99Ms > P99_TARGET_MS ? " !" : ""}` : "-",
  ],
  ["srv CPU ms/call", (r) => r.measured?.serverCpuMsPerCall.toFixed(2) ?? "-"],
  ["pg CPU ms/call", (r) => r.measured?.postgresCpuMsPerCall.toFixed(2) ?? "-"],
  ["load CPU ms/call", (r) => r.measured?.clientCpuMsPerCall.toFixed(2) ?? "-"],
  ["box busy", (r) => (r.measured ? `${(r.measured.machineBusy * 100).toFixed(0)}%` : "-")],
  [
    "srv GC ms (mark-compacts)",
    (r) => (r.serverGc ? `${r.serverGc.ms.toFixed(1)} (${r.serverGc.count.major ?? 0})` : "-"),
  ],
  ["orders/page", (r) => r.measured?.ordersPerPage.toFixed(1) ?? "-"],
  ["SQL ms", (r) => r.plan?.executionMs.toFixed(2) ?? "-"],
  ["index", (r) => r.plan?.indexes.join(", ") || "-"],
  ["rows read", (r) => (r.plan ? String(r.plan.rowsRead) : "-")],
  ["buffers", (r) => (r.plan ? String(r.plan.sharedBlocks) : "-")],
  ["sorted rows", (r) => (r.plan ? String(r.plan.sortedRows) : "-")],
  ["seq scan?", (r) => (r.plan ? (r.plan.seqScan ? "YES" : "no") : "-")],
  ["errors", (r) => String(r.measured?.errors ?? 0)],
];

function markdown(rows: CaseRow[]): string {
  return markdownTable(
    COLUMNS.map(([h]) => h),
    rows.map((r) => COLUMNS.map(([, f]) => f(r))),
  );
}

const label = (r: CaseRow) => `${r.case.scope}, ${r.case.filter}, ${r.case.sort}, ${r.case.page} page`;

/** The seed's shape in a few lines, then the table of every case. */
export function table(seed: OrderSeed, rows: CaseRow[]): string {
  const pct = (n: number) => `${((n / seed.rows.topLevel) * 100).toFixed(1)}%`;
  const statuses = Object.entries(seed.statuses)
    .map(([s, n]) => `${s} ${pct(n)}`)
    .join(", ");
  const head = [
    `ListOrders on one shard: ${seed.rows.topLevel} top-level orders (+${seed.rows.children} children), ` +
      `${seed.rows.items} lines, ${seed.rows.payments} payments, ${seed.rows.events} history rows, ` +
      `${seed.rows.users} buyers; seeded in ${seed.seconds} s.`,
    `Orders per buyer: median ${seed.perBuyer.median}, p99 ${seed.perBuyer.p99}, max ${seed.perBuyer.max} ` +
      `(heavy buyer ${seed.heavy.orders}, typical ${seed.typical.orders}); totals p50 ${seed.totals.p50}, ` +
      `p99 ${seed.totals.p99}, max ${seed.totals.max} minor units; ${statuses}; archived ${pct(seed.archived)}.`,
    `Calls from h2load, one in flight on one h2c connection, page_size 20 (each run's first call, the ` +
      `connection's first, is dropped); "deep" = page tokens after 10 random orders of the listing (as the ` +
      `server issues them after paging there), one h2load run after each; "load CPU" = h2load's; "SQL ms", "rows read" (rows the scans returned or filtered ` +
      `out), "buffers" and "sorted rows" from EXPLAIN (ANALYZE, BUFFERS) of the list statement (of the ` +
      `first deep position for deep pages); "!" marks p99 > ${P99_TARGET_MS} ms; ` +
      `"box busy" = the machine's CPU busy share meanwhile (above ~60% on 2 cores, other work competed); ` +
      `"srv GC ms" = the server's GC pauses meanwhile (all kinds, from its /metrics), with its ` +
      `mark-compacts counted.`,
    "",
  ];
  const skipped = rows.filter((r) => r.skipped).map((r) => `${label(r)}: ${r.skipped}`);
  return [
    ...head,
    markdown(rows.filter((r) => !r.skipped)),
    ...(skipped.length > 0 ? ["", `Not measured: ${skipped.join("; ")}.`] : []),
  ].join("\n");
}

export function checks(seed: OrderSeed, rows: CaseRow[]): TargetCheck[] {
  const measured = rows.filter((r) => r.measured && r.measured.calls > 0);
  const worst = measured.reduce<CaseRow | null>(
    (w, r) => (!w || (r.measured?.p99Ms ?? 0) > (w.measured?.p99Ms ?? 0) ? r : w),
    null,
  );
  const over = measured.filter((r) => (r.measured?.p99Ms ?? 0) > P99_TARGET_MS);
  // Every call of every case together: the latency a mixed ListOrders workload sees.
  const pooled = measured.flatMap((r) => r.measured?.samples ?? []).sort((a, b) => a - b);
  const pooledAt = (q: number) => quantile(pooled, q, 0);
  const slow = pooled.filter((ms) => ms > P99_TARGET_MS).length;
  const plans = rows.filter((r) => r.plan);
  const seq = plans.filter((r) => r.plan?.seqScan);
  const sorts = plans.filter((r) => (r.plan?.sortedRows ?? 0) > LARGE_SORT);
  const millions = (seed.rows.topLevel / 1e6).toFixed(seed.rows.topLevel < 1e6 ? 2 : 0);
  return [
    {
      scenario: SCENARIO,
      target: `ListOrders p99 <= ${P99_TARGET_MS} ms at 1M orders on a shard`,
      measured: worst?.measured
        ? `all ${pooled.length} calls: p50 ${pooledAt(0.5).toFixed(2)} ms, p99 ${pooledAt(0.99).toFixed(2)} ms, ` +
          `${slow} over ${P99_TARGET_MS} ms (${((100 * slow) / Math.max(1, pooled.length)).toFixed(2)}%); ` +
          `per case: worst p99 ${worst.measured.p99Ms.toFixed(2)} ms (${label(worst)}) at ${millions}M orders, ` +
          `${over.length} of ${measured.length} cases over ${P99_TARGET_MS} ms (the verdict: every case)` +
          (over.length > 0
            ? `; ${over.filter((r) => (r.serverGc?.count.major ?? 0) > 0).length} of those ${over.length} had a ` +
              `mark-compact of the server in them (${measured.filter((r) => (r.serverGc?.count.major ?? 0) > 0).length} cases had one)`
            : "")
        : "nothing measured",
      met: worst?.measured !== undefined && worst.measured !== null && worst.measured.p99Ms <= P99_TARGET_MS,
    },
    {
      scenario: SCENARIO,
      target: "every ListOrders plan uses an index (no Seq Scan)",
      measured:
        `${plans.length} plans: ${seq.length} with a Seq Scan${seq[0] ? ` (${label(seq[0])})` : ""}; ` +
        `${sorts.length} sort more than ${LARGE_SORT} rows${sorts[0] ? ` (${label(sorts[0])})` : ""}`,
      met: plans.length > 0 && seq.length === 0,
    },
  ];
}
