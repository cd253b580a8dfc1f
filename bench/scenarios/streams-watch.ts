/**
 * The streams scenario's watchers: thousands of WatchOrder / WatchOrders calls spread over many h2c
 * connections to two instances, each live once its first heartbeat came, every received event kept
 * with its arrival time (streams-deliveries.ts accounts for them).
 */
import type { ClientHttp2Session, ClientHttp2Stream } from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  WatchOrderRequestSchema,
  WatchOrderResponseSchema,
  WatchOrdersRequestSchema,
} from "../../gen/shop/order/v1/order_pb.js";
import { type CallEnd, cancel, frame, startCall } from "../lib/h2-grpc.js";

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
