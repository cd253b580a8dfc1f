/**
 * The streams scenario's accounting: the events every watcher received against the status changes
 * that were made. Every watcher must receive every successful change of each order it watches exactly
 * once, and an order's changes in version order; each delivery's latency is measured from its change.
 */
import { quantile } from "../lib/quantile.js";
import type { Watcher } from "./streams-watch.js";

/** A status change as the driver made it. */
export interface Change {
  orderId: string;
  /** The order's version after the change (what watchers see as the event's version). */
  version: number;
  instance: 0 | 1;
  /** A warm-up change: checked for delivery, left out of the latency figures. */
  warmup: boolean;
  /** performance.now() just before the request was sent, and when its answer arrived. */
  sentAt: number;
  answeredAt: number;
  error: string | null;
}

/** Latency quantiles, ms. */
export interface Quantiles {
  n: number;
  p50: number;
  p99: number;
  max: number;
}

export interface Deliveries {
  expected: number;
  delivered: number;
  missing: number;
  duplicates: number;
  outOfOrder: number;
  /** Events no successful change explains. */
  unexpected: number;
  /** Event arrival - request sent, over all deliveries and by watcher instance vs change instance. */
  sinceSent: { all: Quantiles; same: Quantiles; other: Quantiles };
  /** Event arrival - answer arrived (negative: the event came first). */
  sinceAnswer: { all: Quantiles; same: Quantiles; other: Quantiles };
  /** The UpdateOrderStatus calls themselves: answer arrived - request sent. */
  call: Quantiles;
  /** Epoch ms of second 0 of `bySecond` (the first measured change), to line it up with server logs. */
  timelineStartEpochMs: number;
  /** Per second of the run (by when the change was sent): its calls and its deliveries, to find spikes. */
  bySecond: { second: number; changes: number; callP99: number; deliveries: number; deliveryP99: number }[];
}

/** The successful changes by order id, in version order. */
export function changesByOrder(changes: Change[]): Map<string, Change[]> {
  const out = new Map<string, Change[]>();
  for (const c of changes.filter((c) => c.error === null))
    out.set(c.orderId, [...(out.get(c.orderId) ?? []), c]);
  for (const list of out.values()) list.sort((a, b) => a.version - b.version);
  return out;
}

/** How many events the watchers should receive in all. */
export function expectedDeliveries(watchers: Watcher[], byOrder: Map<string, Change[]>): number {
  let n = 0;
  for (const w of watchers) for (const id of w.orders) n += byOrder.get(id)?.length ?? 0;
  return n;
}

/** One event matched to the change it reports. */
interface Matched {
  change: Change;
  sameInstance: boolean;
  at: number;
}

/** Counts what each watcher missed, got twice or out of order, and measures every delivery. */
export function account(watchers: Watcher[], changes: Change[]): Deliveries {
  const byOrder = changesByOrder(changes);
  const { matched, ...bad } = match(watchers, byOrder);
  const expected = expectedDeliveries(watchers, byOrder);
  const measured = matched.filter((m) => !m.change.warmup);
  const sides = (since: (c: Change) => number) => {
    const of = (ms: Matched[]) => quantiles(ms.map((m) => m.at - since(m.change)));
    return {
      all: of(measured),
      same: of(measured.filter((m) => m.sameInstance)),
      other: of(measured.filter((m) => !m.sameInstance)),
    };
  };
  const made = [...byOrder.values()].flat();
  const timed = made.filter((c) => !c.warmup);
  // Seconds counted from the first measured change (warm-up ones fall before 0).
  const t0 = Math.min(...(timed.length > 0 ? timed : made).map((c) => c.sentAt));
  return {
    expected,
    delivered: matched.length,
    missing: expected - matched.length,
    ...bad,
    sinceSent: sides((c) => c.sentAt),
    sinceAnswer: sides((c) => c.answeredAt),
    call: quantiles(timed.map((c) => c.answeredAt - c.sentAt)),
    timelineStartEpochMs: Math.round(performance.timeOrigin + t0),
    bySecond: timeline(made, matched, t0),
  };
}

/** Each watcher's events against the changes of the orders it watches. */
function match(watchers: Watcher[], byOrder: Map<string, Change[]>) {
  const key = (orderId: string, version: number) => `${orderId}\u0000${version}`;
  const change = new Map<string, Change>();
  for (const list of byOrder.values()) for (const c of list) change.set(key(c.orderId, c.version), c);
  const matched: Matched[] = [];
  const bad = { duplicates: 0, outOfOrder: 0, unexpected: 0 };
  for (const w of watchers) {
    const seen = new Set<string>();
    const highest = new Map<string, number>();
    for (const e of w.events) {
      const k = key(e.orderId, e.version);
      const c = change.get(k);
      if (seen.has(k)) bad.duplicates++;
      else if (c === undefined || !w.orders.includes(e.orderId)) bad.unexpected++;
      else {
        seen.add(k);
        if (e.version < (highest.get(e.orderId) ?? 0)) bad.outOfOrder++;
        highest.set(e.orderId, Math.max(e.version, highest.get(e.orderId) ?? 0));
        matched.push({ change: c, sameInstance: c.instance === w.instance, at: e.at });
      }
    }
  }
  return { matched, ...bad };
}

/** Calls and deliveries by the second their change was sent in, to line spikes up with server logs. */
function timeline(made: Change[], matched: Matched[], t0: number): Deliveries["bySecond"] {
  const perSecond = new Map<number, { calls: number[]; deliveries: number[] }>();
  const bucket = (c: Change) => {
    const second = Math.floor((c.sentAt - t0) / 1000);
    const b = perSecond.get(second) ?? { calls: [], deliveries: [] };
    perSecond.set(second, b);
    return b;
  };
  for (const c of made) bucket(c).calls.push(c.answeredAt - c.sentAt);
  for (const m of matched) bucket(m.change).deliveries.push(m.at - m.change.sentAt);
  return [...perSecond]
    .sort(([x], [y]) => x - y)
    .map(([second, b]) => ({
      second,
      changes: b.calls.length,
      callP99: quantiles(b.calls).p99,
      deliveries: b.deliveries.length,
      deliveryP99: quantiles(b.deliveries).p99,
    }));
}

/** p50, p99 and max of a sample (NaN when empty). */
export function quantiles(xs: number[]): Quantiles {
  const s = [...xs].sort((a, b) => a - b);
  const at = (p: number) => quantile(s, p);
  return { n: s.length, p50: at(0.5), p99: at(0.99), max: s.at(-1) ?? Number.NaN };
}
