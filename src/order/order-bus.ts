import { Redis } from "ioredis";
import type { Logger } from "pino";
import type { OrderEventView } from "./order.model.js";

/*
 * Order events between instances: every instance publishes to EVERY Redis node and subscribes on
 * every node (one subscriber connection per node per process, however many watchers), so one node
 * down does not stop live delivery. Each event then arrives once per live node: the copies are
 * dropped by (orderId, version) against a bounded set of recent keys. Redis pub/sub is best effort
 * (a process can die between commit and publish, a node can drop a message): the watch hub's
 * reconcile against the database is what guarantees delivery; the bus only makes it fast.
 */

/** Committed order events, fanned out to every instance. */
export interface OrderBus {
  /** Publishes committed events to every Redis node; never rejects (failures are logged; the hub's reconcile repairs). */
  publish(events: OrderEventView[]): Promise<void>;
  /** Local listener for every event published by any instance (deduplicated across nodes). Returns unsubscribe. */
  subscribe(listener: (event: OrderEventView) => void): () => void;
  /** Resolves when subscribed on at least one node. */
  readonly ready: Promise<void>;
  /** Called whenever a node's subscription (re)connects, so the hub can re-check for anything missed. */
  onResubscribe(listener: () => void): () => void;
  close(): Promise<void>;
}

const DEFAULT_CHANNEL = "shop:order-events";
/** Bounds a publish to a hung node: the caller's RPC must not wait on it. */
const COMMAND_TIMEOUT_MS = 500;
/** How many recent (orderId, version) keys are remembered to drop the other nodes' copies. */
const RECENT_KEYS = 20_000;

/** The wire form: one message per publish call, dates as ISO strings. */
interface Message {
  v: 1;
  events: (Omit<OrderEventView, "createdAt"> & { createdAt: string })[];
}

/** Connects a publisher and a subscriber to each node; nodes that are down join when they come up. */
export function createOrderBus(opts: { redisUrls: string[]; logger: Logger; channel?: string }): OrderBus {
  if (opts.redisUrls.length === 0) throw new Error("the order bus needs at least one Redis URL");
  const channel = opts.channel ?? DEFAULT_CHANNEL;
  const log = opts.logger.child({ component: "order-bus" });
  const listeners = new Set<(event: OrderEventView) => void>();
  const resubscribeListeners = new Set<() => void>();
  const recent = new RecentKeys(RECENT_KEYS);
  let closed = false;
  let markReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => {
    markReady = resolve;
  });

  const deliver = (raw: string, node: number): void => {
    const events = parse(raw);
    if (!events) {
      log.warn({ node }, "ignoring a malformed order-bus message");
      return;
    }
    for (const event of events) {
      if (!recent.add(`${event.orderId}\u0000${event.version}`)) continue;
      for (const listener of listeners) {
        try {
          listener(event);
        } catch (err) {
          log.error({ err }, "order-bus listener failed");
        }
      }
    }
  };

  const publishers = opts.redisUrls.map((url, node) => {
    const client = new Redis(url, clientOptions());
    client.on("error", (err) => log.debug({ err, node }, "order-bus publisher error"));
    return client;
  });
  const subscribers = opts.redisUrls.map((url, node) => {
    const client = new Redis(url, { ...clientOptions(), autoResubscribe: false });
    client.on("error", (err) => log.debug({ err, node }, "order-bus subscriber error"));
    client.on("message", (ch: string, raw: string) => {
      if (ch === channel) deliver(raw, node);
    });
    // Subscribed by hand on every (re)connect, so the moment it takes effect is known: anything
    // published while this node was away may be missing, and the listeners are told to re-check.
    client.on("ready", () => {
      if (closed) return;
      client.subscribe(channel).then(
        () => {
          log.debug({ node }, "order-bus subscribed");
          markReady();
          for (const listener of resubscribeListeners) {
            try {
              listener();
            } catch (err) {
              log.error({ err }, "order-bus resubscribe listener failed");
            }
          }
        },
        (err: unknown) => {
          log.warn({ err, node }, "order-bus subscribe failed; reconnecting");
          if (client.status === "ready") client.disconnect(true);
        },
      );
    });
    return client;
  });

  return {
    ready,
    async publish(events) {
      if (events.length === 0 || closed) return;
      const message: Message = {
        v: 1,
        events: events.map((e) => ({ ...e, createdAt: e.createdAt.toISOString() })),
      };
      const payload = JSON.stringify(message);
      const results = await Promise.allSettled(publishers.map((client) => client.publish(channel, payload)));
      const failed = results.flatMap((r, node) => (r.status === "rejected" ? [{ node, err: r.reason }] : []));
      if (failed.length === publishers.length) {
        log.warn(
          { errors: failed, events: events.length },
          "order events not published on any Redis node; watchers get them from the reconcile",
        );
      } else if (failed.length > 0) {
        log.debug({ errors: failed }, "order events not published on some Redis nodes");
      }
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    onResubscribe(listener) {
      resubscribeListeners.add(listener);
      return () => resubscribeListeners.delete(listener);
    },
    async close() {
      closed = true;
      listeners.clear();
      resubscribeListeners.clear();
      const all = [...publishers, ...subscribers];
      await Promise.allSettled(all.map((c) => (c.status === "ready" ? c.quit() : c.disconnect())));
      for (const client of all) client.disconnect();
    },
  };
}

/** Fail fast while a node is away (no offline queue, bounded commands); reconnect forever. */
function clientOptions() {
  return {
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    connectTimeout: 1000,
    commandTimeout: COMMAND_TIMEOUT_MS,
    retryStrategy: (times: number) => Math.min(times * 100, 2000),
  };
}

function parse(raw: string): OrderEventView[] | null {
  let message: Message;
  try {
    message = JSON.parse(raw) as Message;
  } catch {
    return null;
  }
  if (message?.v !== 1 || !Array.isArray(message.events)) return null;
  const out: OrderEventView[] = [];
  for (const e of message.events) {
    if (
      typeof e?.orderId !== "string" ||
      typeof e.userId !== "string" ||
      !Number.isSafeInteger(e.version) ||
      !Number.isSafeInteger(e.seq) ||
      typeof e.createdAt !== "string"
    )
      return null;
    out.push({ ...e, createdAt: new Date(e.createdAt) });
  }
  return out;
}

/** A set of the most recent `capacity` keys (insertion order; the oldest is forgotten first). */
class RecentKeys {
  private readonly keys = new Set<string>();
  constructor(private readonly capacity: number) {}

  /** False when the key was seen recently. */
  add(key: string): boolean {
    if (this.keys.has(key)) return false;
    this.keys.add(key);
    if (this.keys.size > this.capacity) {
      const oldest = this.keys.values().next().value;
      if (oldest !== undefined) this.keys.delete(oldest);
    }
    return true;
  }
}
