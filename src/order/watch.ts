import type { Logger } from "pino";
import { DomainError, invalidArgument } from "../errors.js";
import type { Shard, ShardSet } from "../shard/shards.js";
import type { OrderEventView } from "./order.model.js";
import { orderOwner } from "./order.repository.js";
import type { OrderBus } from "./order-bus.js";
import { currentVersions, eventsOfOrder, eventsOfUser, lastSeqs } from "./order-events.repository.js";

/*
 * The live side of WatchOrder / WatchOrders: replay from order_events, then live events from the bus.
 *
 * Invariants, per watcher: `last` is the position (an order's version, or a user's seq) it yielded
 * last, and it only ever yields a position above `last`, in increasing order, so it can neither
 * repeat nor reorder. A live event is yielded directly only at last + 1, which cannot skip one;
 * anything else that might mean "there is more" (an event beyond last + 1, a buffer that overflowed,
 * the reconcile seeing a newer version or seq in the database) makes it read the database from
 * `last` on, which is the source of truth. The watcher is registered before its first read, and
 * events are published after they commit, so every event is either in that read or arrives live.
 */

/** One item of a watch stream. */
export type WatchItem = { kind: "event"; event: OrderEventView } | { kind: "heartbeat"; at: Date };

/** Every watch stream of this process. */
export interface WatchHub {
  /**
   * NOT_FOUND (field order_id) before yielding anything if the order does not exist or is not userId's.
   * Replays version > afterVersion, then live. `as` maps each item (say, to its message) as it is
   * yielded, so a caller needs no stream of its own around this one.
   */
  watchOrder<M = WatchItem>(
    userId: string,
    orderId: string,
    afterVersion: number,
    signal: AbortSignal,
    as?: (item: WatchItem) => M,
  ): AsyncIterable<M>;
  /** afterSeq null = start live from the user's current last seq; else replay seq > afterSeq, then live. */
  watchOrders<M = WatchItem>(
    userId: string,
    afterSeq: number | null,
    signal: AbortSignal,
    as?: (item: WatchItem) => M,
  ): AsyncIterable<M>;
  /** Open watcher count (for metrics later). */
  openStreams(): number;
  close(): Promise<void>;
}

/** A watcher that falls this far behind drops its buffer and catches up from the database. */
const MAX_BUFFERED = 10_000;
/** Rows per history read. */
const PAGE = 1000;
/** Ids per reconcile query. */
const CHUNK = 1000;

interface Watcher {
  readonly scope: "order" | "user";
  /** The order id (scope order) or the user id (scope user). */
  readonly key: string;
  readonly shard: Shard;
  /** Position yielded last; meaningful once `started`. */
  last: number;
  started: boolean;
  /** Live events not yet looked at, oldest first from `head`. */
  buffer: OrderEventView[];
  head: number;
  /** The database may hold events beyond `last` that are not in the buffer. */
  behind: boolean;
  /** Highest position the reconcile already asked this watcher to read up to. */
  checked: number;
  /**
   * Fires `heartbeatMs` after the last item yielded (re-armed with refresh(), so a delivery allocates
   * no timer): sets `due` and wakes the watcher.
   */
  heartbeat: NodeJS.Timeout | null;
  /** A heartbeat is due: nothing was yielded for `heartbeatMs`. */
  due: boolean;
  /** Resolves the watcher's pending wait, if it is waiting. */
  wake: (() => void) | null;
  registered: boolean;
  /** The caller's signal: the stream ends when it aborts (or the hub closes). */
  readonly signal: AbortSignal;
  /** The watcher is its own abort listener (no closure per stream): stops it. */
  handleEvent(): void;
}

const itself = (item: WatchItem): WatchItem => item;

const position = (w: Watcher, e: OrderEventView): number => (w.scope === "order" ? e.version : e.seq);

/**
 * Creates the hub and subscribes it to the bus. `heartbeatMs` paces both heartbeats and reconciles;
 * `maxBuffered` (default 10,000) is how many live events a watcher buffers before reading the database instead.
 */
export function createWatchHub(
  deps: { shards: ShardSet; bus: OrderBus; logger: Logger },
  options: { heartbeatMs: number; maxBuffered?: number },
): WatchHub {
  const { shards, bus } = deps;
  const log = deps.logger.child({ component: "watch-hub" });
  const heartbeatMs = options.heartbeatMs;
  const maxBuffered = options.maxBuffered ?? MAX_BUFFERED;
  const byOrder = new Map<string, Set<Watcher>>();
  const byUser = new Map<string, Set<Watcher>>();
  let closed = false;
  let open = 0;

  const index = (w: Watcher) => (w.scope === "order" ? byOrder : byUser);

  function register(w: Watcher): void {
    const map = index(w);
    const set = map.get(w.key) ?? new Set<Watcher>();
    set.add(w);
    map.set(w.key, set);
    w.registered = true;
    open++;
  }

  function unregister(w: Watcher): void {
    if (!w.registered) return;
    w.registered = false;
    open--;
    const map = index(w);
    const set = map.get(w.key);
    set?.delete(w);
    if (set?.size === 0) map.delete(w.key);
    w.buffer = [];
    w.head = 0;
  }

  function push(w: Watcher, event: OrderEventView): void {
    if (w.started && position(w, event) <= w.last) return; // a copy of what it already has
    if (w.buffer.length - w.head >= maxBuffered) {
      // Far behind (a slow reader): forget the buffer, read everything from the database instead.
      w.buffer = [];
      w.head = 0;
      w.behind = true;
    } else {
      w.buffer.push(event);
    }
    wakeUp(w);
  }

  function wakeUp(w: Watcher): void {
    const wake = w.wake;
    if (wake === null) return;
    w.wake = null;
    wake();
  }

  /** Ends a watcher's stream: unregistered at once (a reader that never resumes must not keep the registration), then woken to see it. */
  function stop(w: Watcher): void {
    unregister(w);
    wakeUp(w);
  }

  /** The watcher's abort listener (`this` is the watcher). */
  function stopOnAbort(this: Watcher): void {
    stop(this);
  }

  const stopped = (w: Watcher): boolean => closed || w.signal.aborted;

  /** Something was yielded: the next heartbeat is due `heartbeatMs` from now. */
  function yielded(w: Watcher): void {
    w.due = false;
    w.heartbeat?.refresh();
  }

  const unsubscribe = bus.subscribe((event) => {
    for (const w of byOrder.get(event.orderId) ?? []) push(w, event);
    for (const w of byUser.get(event.userId) ?? []) push(w, event);
  });

  /** Reads the database from `last` on and yields everything found, in order. */
  async function* readBehind<M>(w: Watcher, as: (item: WatchItem) => M): AsyncGenerator<M> {
    w.behind = false; // cleared before the read: anything flagged during it triggers another one
    for (;;) {
      const em = w.shard.fork();
      const page =
        w.scope === "order"
          ? await eventsOfOrder(em, w.key, w.last, PAGE)
          : await eventsOfUser(em, w.key, w.last, PAGE);
      for (const event of page) {
        if (stopped(w)) return;
        if (position(w, event) <= w.last) continue;
        w.last = position(w, event);
        yielded(w);
        yield as({ kind: "event", event });
      }
      if (page.length < PAGE) return;
    }
  }

  /** The next buffered event above `last`, if any (copies are dropped on the way). */
  function nextBuffered(w: Watcher): OrderEventView | undefined {
    while (w.head < w.buffer.length) {
      const event = w.buffer[w.head++] as OrderEventView;
      if (w.head === w.buffer.length) {
        w.buffer = [];
        w.head = 0;
      }
      if (position(w, event) > w.last) return event;
    }
    return undefined;
  }

  /**
   * Waits until woken: an event, a reconcile, the heartbeat timer, or an abort (run's listener). One
   * promise per wait and nothing else: with thousands of open streams, whatever a wait allocates lives
   * until that stream's next item, past minor GCs, so every delivery's share is copied and promoted.
   */
  function wait(w: Watcher): Promise<void> {
    return new Promise((resolve) => {
      w.wake = resolve;
    });
  }

  /**
   * One watcher's stream: register (live events buffer from now on), find the start position,
   * replay, then serve the buffer, reading the database whenever it may be behind.
   */
  async function* run<M>(
    signal: AbortSignal,
    scope: Watcher["scope"],
    key: string,
    route: () => Shard,
    start: (shard: Shard) => Promise<{ last: number; replay: boolean }>,
    as: (item: WatchItem) => M,
  ): AsyncGenerator<M> {
    if (signal.aborted || closed) return;
    const w = watcher(scope, key, route(), signal);
    // Not linked with a hub-wide signal (a listener per stream on it): close() stops every watcher.
    signal.addEventListener("abort", w, { once: true });
    register(w);
    try {
      const { last, replay } = await start(w.shard);
      w.last = last;
      w.checked = last;
      w.started = true;
      w.heartbeat = setTimeout(() => {
        w.due = true;
        wakeUp(w);
      }, heartbeatMs);
      if (replay) yield* readBehind(w, as);
      // "Live from here": the history is sent, and everything from now on arrives as it happens.
      if (!stopped(w)) {
        yielded(w);
        yield as({ kind: "heartbeat", at: new Date() });
      }
      while (!stopped(w)) {
        const event = nextBuffered(w);
        if (event !== undefined && position(w, event) === w.last + 1) {
          w.last = position(w, event);
          yielded(w);
          yield as({ kind: "event", event });
        } else if (event !== undefined || w.behind) {
          // A gap (a lost or reordered message), an overflow, or the reconcile saw more.
          yield* readBehind(w, as);
          if (event !== undefined && position(w, event) > w.last && !stopped(w)) {
            log.warn(
              { scope: w.scope, key: w.key, position: position(w, event) },
              "live event not in history",
            );
          }
        } else if (w.due) {
          yielded(w);
          yield as({ kind: "heartbeat", at: new Date() });
        } else {
          await wait(w);
        }
      }
    } finally {
      if (w.heartbeat) clearTimeout(w.heartbeat);
      signal.removeEventListener("abort", w);
      unregister(w);
    }
  }

  function watcher(scope: Watcher["scope"], key: string, shard: Shard, signal: AbortSignal): Watcher {
    return {
      scope,
      key,
      shard,
      last: 0,
      started: false,
      buffer: [],
      head: 0,
      behind: false,
      checked: 0,
      heartbeat: null,
      due: false,
      wake: null,
      registered: false,
      signal,
      handleEvent: stopOnAbort,
    };
  }

  /** Flags a watcher the database shows behind, once per new position. */
  function flag(w: Watcher, current: number): void {
    if (!w.started || current <= Math.max(w.last, w.checked)) return;
    w.checked = current;
    w.behind = true;
    wakeUp(w);
  }

  /**
   * Repairs what the bus lost (a process dead between commit and publish, a dropped message, a node
   * that was away): per shard, one query per chunk of watched orders and one per chunk of watched
   * users; a watcher behind the database reads what it misses.
   */
  async function reconcile(): Promise<void> {
    const work = new Map<Shard, { orders: string[]; users: string[] }>();
    const slot = (shard: Shard) => {
      const entry = work.get(shard) ?? { orders: [], users: [] };
      work.set(shard, entry);
      return entry;
    };
    for (const [orderId, set] of byOrder) {
      const first = set.values().next().value;
      if (first) slot(first.shard).orders.push(orderId);
    }
    for (const [userId, set] of byUser) {
      const first = set.values().next().value;
      if (first) slot(first.shard).users.push(userId);
    }
    await Promise.all(
      [...work].map(async ([shard, { orders, users }]) => {
        try {
          for (let i = 0; i < orders.length; i += CHUNK) {
            const versions = await currentVersions(shard.fork(), orders.slice(i, i + CHUNK));
            for (const [orderId, version] of versions)
              for (const w of byOrder.get(orderId) ?? []) flag(w, version);
          }
          for (let i = 0; i < users.length; i += CHUNK) {
            const seqs = await lastSeqs(shard.fork(), users.slice(i, i + CHUNK));
            for (const [userId, seq] of seqs) for (const w of byUser.get(userId) ?? []) flag(w, seq);
          }
        } catch (err) {
          log.warn({ err, shard: shard.index }, "watch reconcile of a shard failed; the next one retries");
        }
      }),
    );
  }

  let running: Promise<void> | null = null;
  let again = false;
  /** Runs a reconcile now, or right after the one running when `soon` (a node resubscribed). */
  function requestReconcile(soon: boolean): void {
    if (closed || open === 0) return;
    if (running) {
      again ||= soon;
      return;
    }
    running = reconcile().finally(() => {
      running = null;
      if (again) {
        again = false;
        requestReconcile(false);
      }
    });
  }
  const timer = setInterval(() => requestReconcile(false), heartbeatMs).unref();
  const offResubscribe = bus.onResubscribe(() => requestReconcile(true));

  return {
    watchOrder<M>(
      userId: string,
      orderId: string,
      afterVersion: number,
      signal: AbortSignal,
      as?: (item: WatchItem) => M,
    ) {
      return run(
        signal,
        "order",
        orderId,
        () => shards.forId(orderId, "ord", "order_id"),
        async (shard) => {
          const order = await orderOwner(shard.fork(), orderId);
          if (order?.userId !== userId) throw orderNotFound();
          if (afterVersion > order.version)
            throw invalidArgument("after_version", `is past the order's current version ${order.version}`);
          return { last: Math.max(0, afterVersion), replay: true };
        },
        as ?? (itself as (item: WatchItem) => M),
      );
    },
    watchOrders<M>(
      userId: string,
      afterSeq: number | null,
      signal: AbortSignal,
      as?: (item: WatchItem) => M,
    ) {
      return run(
        signal,
        "user",
        userId,
        () => shards.forUser(userId),
        async (shard) => {
          if (afterSeq !== null) return { last: Math.max(0, afterSeq), replay: true };
          const seqs = await lastSeqs(shard.fork(), [userId]);
          return { last: seqs.get(userId) ?? 0, replay: false };
        },
        as ?? (itself as (item: WatchItem) => M),
      );
    },
    openStreams: () => open,
    async close() {
      closed = true;
      for (const set of [...byOrder.values(), ...byUser.values()]) for (const w of [...set]) stop(w);
      clearInterval(timer);
      unsubscribe();
      offResubscribe();
      await running;
    },
  };
}

function orderNotFound(): DomainError {
  return new DomainError("not_found", "order_id: no such order", { field: "order_id" });
}
