/**
 * The streams scenario's watchers: thousands of WatchOrder / WatchOrders calls spread over many h2c
 * connections to two instances, every received event kept with its arrival time, and the accounting
 * of those events against the status changes that were made (latency, missing, duplicated, reordered).
 */
import type { ClientHttp2Session, ClientHttp2Stream } from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  WatchOrderRequestSchema,
  WatchOrderResponseSchema,
  WatchOrdersRequestSchema,
} from "../../gen/shop/order/v1/order_pb.js";
import { type CallEnd, cancel, frame, startCall } from "./streams-client.js";

const WATCH_ORDER = "/shop.order.v1.OrderService/WatchOrder";
const WATCH_ORDERS = "/shop.order.v1.OrderService/WatchOrders";

/** What one watcher watches, where, as whom. */
export interface WatchTarget {
  /** 0 = instance A, 1 = instance B. */
  instance: 0 | 1;
  scope: "order" | "user";
  userId: string;
  /** The watched order (scope order); every order of the user (scope user). */
  orders: string[];
  bearer: string;
}

/** One event as a watcher received it. */
export interface Received {
  orderId: string;
  version: number;
  /** performance.now() when its bytes arrived. */
  at: number;
}

export interface Watcher extends WatchTarget {
  /** The first heartbeat came: replay done, live from here. */
  live: boolean;
  events: Received[];
  /** Set when the call ended (only expected after close). */
  ended: CallEnd | null;
  stream: ClientHttp2Stream | null;
}

/**
 * Opens every target in waves of `wave` calls, each wave only once the previous one is live (every
 * call has had its first heartbeat). `sessions[i]` are instance i's connections, used round-robin.
 * Throws when a wave is not live within `timeoutMs`.
 */
export async function openWatchers(
  targets: WatchTarget[],
  sessions: ClientHttp2Session[][],
  wave: number,
  timeoutMs: number,
): Promise<Watcher[]> {
  const watchers: Watcher[] = targets.map((t) => ({
    ...t,
    live: false,
    events: [],
    ended: null,
    stream: null,
  }));
  const next = [0, 0];
  for (let from = 0; from < watchers.length; from += wave) {
    const batch = watchers.slice(from, from + wave);
    let waiting = batch.length;
    let wake: () => void = () => {};
    const allLive = new Promise<void>((resolve) => {
      wake = resolve;
    });
    const seen = () => {
      if (--waiting === 0) wake();
    };
    for (const w of batch) {
      const pool = sessions[w.instance] as ClientHttp2Session[];
      const n = ((next[w.instance] as number) + 1) % pool.length;
      next[w.instance] = n;
      w.stream = start(pool[n] as ClientHttp2Session, w, seen);
    }
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(lateMessage(batch, timeoutMs))), timeoutMs);
    });
    await Promise.race([allLive, late]).finally(() => clearTimeout(timer));
  }
  return watchers;
}

function lateMessage(batch: Watcher[], timeoutMs: number): string {
  const notLive = batch.filter((w) => !w.live);
  const firstError = notLive.find((w) => w.ended?.error)?.ended?.error ?? "none";
  return `${notLive.length} of ${batch.length} watchers not live after ${timeoutMs} ms (first error: ${firstError})`;
}

function start(session: ClientHttp2Session, w: Watcher, seen: () => void): ClientHttp2Stream {
  const body =
    w.scope === "order"
      ? toBinary(
          WatchOrderRequestSchema,
          // after_version 1: the order was just created (version 1); nothing to replay.
          create(WatchOrderRequestSchema, { userId: w.userId, orderId: w.orders[0] ?? "", afterVersion: 1n }),
        )
      : toBinary(WatchOrdersRequestSchema, create(WatchOrdersRequestSchema, { userId: w.userId }));
  // WatchOrdersResponse has the same fields as WatchOrderResponse, so one schema decodes both.
  const onMessage = (msg: Uint8Array, at: number) => {
    const m = fromBinary(WatchOrderResponseSchema, msg).message;
    if (m.case === "event") w.events.push({ orderId: m.value.orderId, version: Number(m.value.version), at });
    else if (m.case === "heartbeat" && !w.live) {
      w.live = true;
      seen();
    }
  };
  const onEnd = (end: CallEnd) => {
    w.ended = end;
    if (!w.live) seen(); // failed before going live: counted, not waited for
  };
  return startCall(
    session,
    w.scope === "order" ? WATCH_ORDER : WATCH_ORDERS,
    w.bearer,
    frame(body),
    onMessage,
    onEnd,
  );
}

/** Cancels every watcher's call. */
export function closeWatchers(watchers: Watcher[]): void {
  for (const w of watchers) if (w.stream) cancel(w.stream);
}

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

/**
 * Every watcher must receive every successful change of each order it watches exactly once, and an
 * order's changes in version order; the latency of each delivery is measured from its change.
 */
export function account(watchers: Watcher[], changes: Change[]): Deliveries {
  const byOrder = changesByOrder(changes);
  const key = (orderId: string, version: number) => `${orderId}\u0000${version}`;
  const change = new Map<string, Change>();
  for (const list of byOrder.values()) for (const c of list) change.set(key(c.orderId, c.version), c);
  // Seconds counted from the first measured change (warm-up ones fall before 0).
  const t0 = Math.min(...changes.filter((c) => !c.warmup).map((c) => c.sentAt));
  const second = (c: Change) => Math.floor((c.sentAt - t0) / 1000);
  const perSecond = new Map<number, { calls: number[]; deliveries: number[] }>();
  const bucket = (c: Change) => {
    const b = perSecond.get(second(c)) ?? { calls: [], deliveries: [] };
    perSecond.set(second(c), b);
    return b;
  };
  for (const list of byOrder.values()) for (const c of list) bucket(c).calls.push(c.answeredAt - c.sentAt);
  const lat = { all: [] as number[], same: [] as number[], other: [] as number[] };
  const ans = { all: [] as number[], same: [] as number[], other: [] as number[] };
  const d = { expected: expectedDeliveries(watchers, byOrder), delivered: 0, missing: 0 };
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
        d.delivered++;
        if (e.version < (highest.get(e.orderId) ?? 0)) bad.outOfOrder++;
        highest.set(e.orderId, Math.max(e.version, highest.get(e.orderId) ?? 0));
        const side = c.instance === w.instance ? "same" : "other";
        bucket(c).deliveries.push(e.at - c.sentAt);
        if (c.warmup) continue;
        for (const [into, from] of [
          [lat, c.sentAt],
          [ans, c.answeredAt],
        ] as const) {
          into.all.push(e.at - from);
          into[side].push(e.at - from);
        }
      }
    }
  }
  d.missing = d.expected - d.delivered;
  const q = (xs: { all: number[]; same: number[]; other: number[] }) => ({
    all: quantiles(xs.all),
    same: quantiles(xs.same),
    other: quantiles(xs.other),
  });
  const bySecond = [...perSecond]
    .sort(([x], [y]) => x - y)
    .map(([second, b]) => ({
      second,
      changes: b.calls.length,
      callP99: quantiles(b.calls).p99,
      deliveries: b.deliveries.length,
      deliveryP99: quantiles(b.deliveries).p99,
    }));
  const calls = [...byOrder.values()]
    .flat()
    .filter((c) => !c.warmup)
    .map((c) => c.answeredAt - c.sentAt);
  return {
    ...d,
    ...bad,
    sinceSent: q(lat),
    sinceAnswer: q(ans),
    call: quantiles(calls),
    timelineStartEpochMs: Math.round(performance.timeOrigin + t0),
    bySecond,
  };
}

export function quantiles(xs: number[]): Quantiles {
  const s = [...xs].sort((a, b) => a - b);
  const at = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? Number.NaN;
  return { n: s.length, p50: at(0.5), p99: at(0.99), max: s.at(-1) ?? Number.NaN };
}
