/** The streams scenario's table, target check and error count from what it measured. */
import { markdownTable } from "../lib/report.js";
import type { ScenarioResult } from "../lib/scenario.js";
import type { Deliveries, Quantiles } from "./streams-deliveries.js";

/** Everything the streams scenario measured (also what goes into the results JSON). */
export interface StreamsData {
  size: Record<string, number>;
  /** The port the watchers used: the one port (connect-node) or the native gRPC port (grpc-js). */
  watchPort: "main" | "native";
  watchers: { total: number; users: number; openMs: number };
  /** watch_streams_open of A and B once every watcher was live. */
  openOnServer: number[];
  changes: {
    made: number;
    /** Of `made`, the first ones, left out of the latency figures. */
    warmup: number;
    failed: number;
    firstError: string | null;
    viaB: number;
    driveMs: number;
  };
  deliveries: Deliveries;
  /** Watch calls the server ended before the bench closed them. */
  endedEarly: number;
  /** watch_streams_open of A and B after every watcher was cancelled (should be 0). */
  leaked: number[];
  servers: {
    name: string;
    watchers: number;
    /** Events received by this instance's watchers. */
    delivered: number;
    rssBeforeMiB: number;
    rssWatchingMiB: number;
    rssPeakMiB: number;
    /** CPU share of one core with every watcher open and nothing happening. */
    idleCpuShare: number;
    /** CPU ms from the first change until the deliveries settled. */
    cpuMs: number;
    /** Its collections meanwhile, by kind, and their pauses' total (ms), from its /metrics. */
    gc: { count: Record<string, number>; ms: number };
  }[];
  client: {
    cpuMs: number;
    loopDelayP99Ms: number;
    loopDelayMaxMs: number;
    /** The client's own collections meanwhile: pauses, mark-compacts among them, longest and total ms. */
    gc: { pauses: number; majors: number; maxMs: number; totalMs: number };
  };
  /** The whole machine while the changes ran: busy share of all cores (other work on the box included). */
  machine: { busyShare: number; nproc: number; loadAvgAtStart: number };
  violations: number;
  /** From the first change until the deliveries settled. */
  runWindowMonotonicUs: [number, number];
  totalMs: number;
}

export const TARGET = "stream delivery p99 <= 100 ms with 10k watchers";

export function report(data: StreamsData, smoke: boolean): ScenarioResult {
  const d = data.deliveries;
  const deliveryErrors = d.missing + d.duplicates + d.outOfOrder + d.unexpected;
  const leaked = data.leaked.reduce((a, b) => a + b, 0);
  const errors = deliveryErrors + data.changes.failed + data.endedEarly + leaked;
  const p99 = d.sinceSent.all.p99;
  const measured =
    `p99 ${f(p99)} ms (same instance ${f(d.sinceSent.same.p99)}, other ${f(d.sinceSent.other.p99)}) over ` +
    `${d.sinceSent.all.n} measured deliveries to ${data.watchers.total} watchers, ${d.missing} missing` +
    (smoke ? " (smoke size)" : "");
  return {
    table: [latencyTable(d), "", serverTable(data), "", summary(data)].join("\n"),
    data,
    checks: [{ scenario: "6 streams", target: TARGET, measured, met: p99 <= 100 && d.missing === 0 }],
    violations: data.violations,
    errors,
  };
}

const f = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : "-");

function latencyTable(d: Deliveries): string {
  const row = (name: string, sent: Quantiles, answer: Quantiles) => [
    name,
    String(sent.n),
    f(sent.p50),
    f(sent.p99),
    f(sent.max),
    f(answer.p50),
    f(answer.p99),
  ];
  return markdown(
    [
      "6 streams: delivery",
      "events",
      "p50 ms",
      "p99 ms",
      "max ms",
      "p50 ms after answer",
      "p99 ms after answer",
    ],
    [
      row("all watchers", d.sinceSent.all, d.sinceAnswer.all),
      row("same instance as the change", d.sinceSent.same, d.sinceAnswer.same),
      row("other instance", d.sinceSent.other, d.sinceAnswer.other),
      ["(UpdateOrderStatus call)", String(d.call.n), f(d.call.p50), f(d.call.p99), f(d.call.max), "", ""],
    ],
  );
}

function serverTable(data: StreamsData): string {
  return markdown(
    [
      "instance",
      "watchers",
      "RSS MiB before",
      "RSS MiB watching",
      "RSS MiB peak",
      "idle CPU",
      "run CPU ms",
      "CPU ms/event",
      "open after close",
    ],
    data.servers.map((s, i) => [
      s.name,
      String(s.watchers),
      s.rssBeforeMiB.toFixed(0),
      s.rssWatchingMiB.toFixed(0),
      s.rssPeakMiB.toFixed(0),
      `${(s.idleCpuShare * 100).toFixed(1)}%`,
      s.cpuMs.toFixed(0),
      (s.cpuMs / Math.max(1, s.delivered)).toFixed(3),
      String(data.leaked[i] ?? "-"),
    ]),
  );
}

function summary(data: StreamsData): string {
  const d = data.deliveries;
  const c = data.changes;
  return [
    `${data.watchers.total} watchers (${data.watchers.users} WatchOrders, the rest WatchOrder) on ` +
      `${data.size.orders} orders, live in ${data.watchers.openMs.toFixed(0)} ms ` +
      `(server gauges ${data.openOnServer.join(" + ")}), on ${data.watchPort === "native" ? "the native gRPC port (grpc-js)" : "the main port (connect-node)"}.`,
    `${c.made} status changes (the first ${c.warmup} a warm-up left out of the latencies; ${c.viaB} through B; ` +
      `${c.failed} failed${c.firstError ? `: ${c.firstError}` : ""}) in ${(c.driveMs / 1000).toFixed(1)} s; ` +
      "CPU ms/event counts the changes' own work too.",
    `Deliveries: ${d.expected} expected, ${d.delivered} delivered, ${d.missing} missing, ${d.duplicates} duplicated, ` +
      `${d.outOfOrder} out of order, ${d.unexpected} unexpected; ${data.endedEarly} streams ended early.`,
    `Client (one process, all watchers): ${data.client.cpuMs.toFixed(0)} CPU ms during the run, event-loop delay ` +
      `p99 ${f(data.client.loopDelayP99Ms)} ms, max ${f(data.client.loopDelayMaxMs)} ms; its GC ` +
      `${data.client.gc.pauses} pauses (${data.client.gc.majors} mark-compacts), longest ${f(data.client.gc.maxMs)} ms, ` +
      `${f(data.client.gc.totalMs)} ms in all. Servers' GC: ` +
      data.servers
        .map(
          (s) =>
            `${s.name} ${f(s.gc.ms)} ms (${s.gc.count.major ?? 0} mark-compacts, ${s.gc.count.minor ?? 0} scavenges)`,
        )
        .join(", ") +
      ". Machine: " +
      `${(data.machine.busyShare * 100).toFixed(0)}% of ${data.machine.nproc} cores busy during the run ` +
      `(load average ${data.machine.loadAvgAtStart.toFixed(1)} at the start). ` +
      `Order check violations: ${data.violations}. Scenario took ${(data.totalMs / 1000).toFixed(0)} s.`,
  ].join("\n");
}

const markdown = markdownTable;
