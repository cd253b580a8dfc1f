/**
 * A product server's garbage collection so far, from its own GET /metrics (prom-client's
 * `nodejs_gc_duration_seconds`, fed by Node's GC performance entries): so a measurement can say how
 * many collections of the server, and of which kind, fell inside it.
 */
export interface GcTotals {
  /** Collections by kind: minor (scavenges), major (mark-compact), incremental (marking steps), weakcb. */
  count: Record<string, number>;
  /** Their pauses' total, ms, by kind. */
  ms: Record<string, number>;
}

const LINE = /^nodejs_gc_duration_seconds_(count|sum)\{kind="(\w+)"\} ([\d.e+-]+)$/;

/** The server's /metrics text (Prometheus exposition format): read once, parsed by gcTotals and rpcCodesIn. */
export async function scrapeMetrics(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  if (!res.ok) throw new Error(`GET /metrics: HTTP ${res.status}`);
  return res.text();
}

/** The collections so far in one /metrics text. */
export function gcTotals(metrics: string): GcTotals {
  const totals: GcTotals = { count: {}, ms: {} };
  for (const line of metrics.split("\n")) {
    const m = LINE.exec(line);
    if (!m) continue;
    const [, what, kind, value] = m as unknown as [string, string, string, string];
    if (what === "count") totals.count[kind] = Number(value);
    else totals.ms[kind] = Number(value) * 1000;
  }
  return totals;
}

/** What happened between two readings: collections by kind, and the pause total of all of them. */
export function gcBetween(before: GcTotals, after: GcTotals): { count: Record<string, number>; ms: number } {
  const count: Record<string, number> = {};
  let ms = 0;
  for (const [kind, n] of Object.entries(after.count)) count[kind] = n - (before.count[kind] ?? 0);
  for (const [kind, t] of Object.entries(after.ms)) ms += t - (before.ms[kind] ?? 0);
  return { count, ms };
}
