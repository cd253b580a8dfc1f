import { setTimeout as delay } from "node:timers/promises";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { entities } from "../../src/app.js";
import { DomainError } from "../../src/errors.js";
import { migrations } from "../../src/migrations/index.js";
import type { OrderEventView } from "../../src/order/order.model.js";
import { createOrderBus, type OrderBus } from "../../src/order/order-bus.js";
import { appendEvent } from "../../src/order/order-events.repository.js";
import { createWatchHub, type WatchHub, type WatchItem } from "../../src/order/watch.js";
import { newId } from "../../src/shard/ids.js";
import { bucketOfUser } from "../../src/shard/router.js";
import { openShards, type ShardSet } from "../../src/shard/shards.js";
import { unique } from "../harness/app.js";
import { type RedisNodes, startRedisNodes } from "../harness/redis-nodes.js";

/*
 * The hub and the bus on the run's real shards and Redis, without a server: orders are plain rows
 * and their events are appended with appendEvent, then published (or deliberately not).
 */

const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });
/** Short, so idle heartbeats and the reconcile show up quickly. */
const HEARTBEAT_MS = 200;
/** A hang guard, not a latency target. */
const WITHIN_MS = 5000;
/** Long enough that the reconcile cannot be what delivered an event. */
const NO_RECONCILE_MS = 600_000;

let shards: ShardSet;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  shards = await openShards({
    urls: inject("shardUrls"),
    entities,
    migrations,
    poolMax: 10,
    bucketMap: null,
    logger,
  });
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(async () => {
  await shards?.close();
});

/** A bus on the given nodes (the run's quorum by default) and a channel of the test's own. */
async function openBus(channel: string, redisUrls: string[] = inject("redisUrls")): Promise<OrderBus> {
  const bus = createOrderBus({ redisUrls, logger, channel });
  cleanups.push(() => bus.close());
  await bus.ready;
  return bus;
}

function openHub(bus: OrderBus, options: { heartbeatMs?: number; maxBuffered?: number } = {}): WatchHub {
  const hub = createWatchHub(
    { shards, bus, logger },
    { heartbeatMs: options.heartbeatMs ?? HEARTBEAT_MS, maxBuffered: options.maxBuffered },
  );
  cleanups.push(() => hub.close());
  return hub;
}

/** Named seed: an order row of `userId` at version 1 with its "created" event. */
async function createOrder(userId: string): Promise<{ id: string; created: OrderEventView }> {
  const id = newId("ord", bucketOfUser(userId));
  const created = await shards
    .forUser(userId)
    .fork()
    .transactional(async (tx) => {
      await tx.execute(
        `insert into orders (id, bucket, order_number, user_id, customer_email, status, reservation_id,
           currency_code, total_minor, stock_status)
         values (?, ?, ?, ?, 'buyer@example.com', 'pending', ?, 'EUR', 1299, 'sold')`,
        [id, bucketOfUser(userId), unique("no"), userId, unique("res")],
      );
      // One line that adds up to the total: the shards are shared, and the order check scans them all.
      await tx.execute(
        `insert into order_items (order_id, product_id, seller_id, warehouse_id, sku, name, quantity,
           unit_price_minor, line_total_minor)
         values (?, ?, 'seller', 'main', 'SKU-1', 'Mug', 1, 1299, 1299)`,
        [id, newId("prd", bucketOfUser(userId))],
      );
      return appendEvent(tx, {
        userId,
        orderId: id,
        version: 1,
        kind: "created",
        fromStatus: "",
        toStatus: "pending",
        reason: "",
        actor: userId,
      });
    });
  return { id, created };
}

/** One committed change of the order (version + 1) and its event; publishing is the caller's choice. */
async function change(userId: string, orderId: string, reason = "step"): Promise<OrderEventView> {
  return shards
    .forUser(userId)
    .fork()
    .transactional(async (tx) => {
      const rows = await tx.execute<{ version: string }[]>(
        "update orders set version = version + 1, updated_at = now() where id = ? returning version",
        [orderId],
      );
      return appendEvent(tx, {
        userId,
        orderId,
        version: Number(rows[0]?.version),
        kind: "status",
        fromStatus: "pending",
        toStatus: "pending",
        reason,
        actor: userId,
      });
    });
}

/** Drains a watch stream in the background and records what it yields. */
class Recorder {
  readonly items: WatchItem[] = [];
  error: unknown;
  ended = false;
  readonly finished: Promise<void>;

  constructor(stream: AsyncIterable<WatchItem>) {
    this.finished = (async () => {
      try {
        for await (const item of stream) this.items.push(item);
      } catch (e) {
        this.error = e;
      } finally {
        this.ended = true;
      }
    })();
  }

  events(): OrderEventView[] {
    return this.items.flatMap((i) => (i.kind === "event" ? [i.event] : []));
  }
  versions(): number[] {
    return this.events().map((e) => e.version);
  }
  seqs(): number[] {
    return this.events().map((e) => e.seq);
  }
  heartbeats(): number {
    return this.items.filter((i) => i.kind === "heartbeat").length;
  }

  async until(what: string, check: () => boolean, ms = WITHIN_MS): Promise<void> {
    const deadline = Date.now() + ms;
    while (!check()) {
      if (this.ended) expect.fail(`stream ended (${String(this.error)}) before: ${what}`);
      if (Date.now() > deadline)
        expect.fail(`not within ${ms} ms: ${what} (got versions ${this.versions().join(",")})`);
      await delay(10);
    }
  }
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/** Opens a watch whose stream is recorded; aborted at the end of the test. */
function watch(
  open: (signal: AbortSignal) => AsyncIterable<WatchItem>,
): Recorder & { stop(): Promise<void> } {
  const abort = new AbortController();
  const recorder = new Recorder(open(abort.signal));
  const stop = async () => {
    abort.abort();
    await recorder.finished;
  };
  cleanups.push(stop);
  return Object.assign(recorder, { stop });
}

describe("watch hub", () => {
  it("replays the history, then streams live changes in order", async () => {
    const bus = await openBus(unique("ch"));
    const hub = openHub(bus);
    const user = unique("buyer");
    const order = await createOrder(user);
    await bus.publish([order.created, await change(user, order.id)]);

    const w = watch((s) => hub.watchOrder(user, order.id, 0, s));
    await w.until("history 1..2", () => w.versions().length >= 2);
    for (let i = 0; i < 3; i++) await bus.publish([await change(user, order.id)]);
    await w.until("live 3..5", () => w.versions().length >= 5);
    await delay(3 * HEARTBEAT_MS); // room for a duplicate to show up
    expect(w.versions()).toEqual(range(1, 5));
    expect(w.events()[0]?.kind).toBe("created");
    expect(hub.openStreams()).toBe(1);
  });

  it("resumes after a version without a gap or a duplicate, with changes landing during the replay", async () => {
    const bus = await openBus(unique("ch"));
    const hub = openHub(bus);
    const user = unique("buyer");
    const order = await createOrder(user);
    for (let i = 0; i < 4; i++) await bus.publish([await change(user, order.id)]);

    const first = watch((s) => hub.watchOrder(user, order.id, 0, s));
    await first.until("1..5", () => first.versions().length >= 5);
    await first.stop();
    const seen = first.versions().at(-1) ?? 0;

    const resumed = watch((s) => hub.watchOrder(user, order.id, seen, s));
    const racing = (async () => {
      for (let i = 0; i < 5; i++) await bus.publish([await change(user, order.id)]);
    })();
    await racing;
    await resumed.until("6..10", () => resumed.versions().length >= 5);
    await delay(3 * HEARTBEAT_MS);
    expect(first.versions()).toEqual(range(1, 5));
    expect(resumed.versions()).toEqual(range(6, 10));
  });

  it("delivers a change that was never published, through the reconcile", async () => {
    const bus = await openBus(unique("ch"));
    const hub = openHub(bus);
    const user = unique("buyer");
    const order = await createOrder(user);
    const w = watch((s) => hub.watchOrder(user, order.id, 1, s));
    const all = watch((s) => hub.watchOrders(user, null, s));
    await w.until("a first heartbeat (the watch is live)", () => w.heartbeats() > 0);
    await all.until("a first heartbeat (the watch is live)", () => all.heartbeats() > 0);

    const lost = await change(user, order.id); // committed, then the "process died" before publish
    await w.until("the lost change", () => w.versions().length === 1, 2 * HEARTBEAT_MS + WITHIN_MS);
    await all.until("the lost change", () => all.seqs().length === 1, 2 * HEARTBEAT_MS + WITHIN_MS);
    expect(w.versions()).toEqual([lost.version]);
    expect(all.seqs()).toEqual([lost.seq]);
  });

  it("fills a gap from the database when a middle event is not published", async () => {
    const bus = await openBus(unique("ch"));
    const hub = openHub(bus, { heartbeatMs: NO_RECONCILE_MS });
    const user = unique("buyer");
    const order = await createOrder(user);
    const w = watch((s) => hub.watchOrder(user, order.id, 1, s));
    const all = watch((s) => hub.watchOrders(user, order.created.seq, s));
    const e2 = await change(user, order.id);
    const e3 = await change(user, order.id);
    const e4 = await change(user, order.id);
    await bus.publish([e2]);
    await bus.publish([e4]); // e3 lost: e4 reveals the gap
    await w.until("2..4", () => w.versions().length >= 3);
    await all.until("seq 2..4", () => all.seqs().length >= 3);
    expect(w.versions()).toEqual([2, 3, 4]);
    expect(all.seqs()).toEqual([e2.seq, e3.seq, e4.seq]);
  });

  it("streams a user's changes live from now, or resumes after a seq", async () => {
    const bus = await openBus(unique("ch"));
    const hub = openHub(bus);
    const user = unique("buyer");
    const a = await createOrder(user);
    const b = await createOrder(user);
    await bus.publish([a.created, b.created]);

    const live = watch((s) => hub.watchOrders(user, null, s));
    await live.until("live (first heartbeat)", () => live.heartbeats() > 0);
    const changes = [await change(user, b.id), await change(user, a.id), await change(user, b.id)];
    for (const e of changes) await bus.publish([e]);
    await live.until("3 live changes", () => live.seqs().length >= 3);

    const resumed = watch((s) => hub.watchOrders(user, a.created.seq, s));
    await resumed.until("history after the first event", () => resumed.seqs().length >= 4);
    await delay(3 * HEARTBEAT_MS);
    expect(live.seqs()).toEqual([3, 4, 5]);
    expect(live.events().map((e) => e.orderId)).toEqual([b.id, a.id, b.id]);
    expect(resumed.seqs()).toEqual([2, 3, 4, 5]);
  });

  it("never repeats or skips under concurrent changes, shuffled and partly lost publishes", async () => {
    const channel = unique("ch");
    const buses = await Promise.all([openBus(channel), openBus(channel), openBus(channel)]);
    const hub = openHub(buses[0] as OrderBus);
    const user = unique("buyer");
    const orders = await Promise.all([createOrder(user), createOrder(user), createOrder(user)]);
    const perOrder = orders.map((o) => watch((s) => hub.watchOrder(user, o.id, 1, s)));
    const all = watch((s) => hub.watchOrders(user, 3, s));
    await all.until("live (first heartbeat)", () => all.heartbeats() > 0);

    const committed: OrderEventView[] = [];
    await Promise.all(
      range(0, 29).map(async (i) => {
        const order = orders[i % 3] as { id: string };
        const e = await change(user, order.id, `c${i}`);
        committed.push(e);
        await delay(Math.random() * 30);
        if (i % 7 !== 3) await (buses[i % 3] as OrderBus).publish([e]); // every 7th is lost
      }),
    );
    const expectedSeqs = committed.map((e) => e.seq).sort((x, y) => x - y);
    await all.until("every change", () => all.seqs().length >= 30, 2 * HEARTBEAT_MS + WITHIN_MS);
    for (const w of perOrder) await w.until("every change of the order", () => w.versions().length >= 10);
    await delay(3 * HEARTBEAT_MS);
    expect(all.seqs()).toEqual(expectedSeqs);
    for (const [i, w] of perOrder.entries()) {
      expect(w.versions()).toEqual(range(2, 11));
      expect(new Set(w.events().map((e) => e.orderId))).toEqual(new Set([orders[i]?.id]));
    }
  });

  it("catches up from the database when a slow reader overflows its buffer", async () => {
    const bus = await openBus(unique("ch"));
    const hub = openHub(bus, { heartbeatMs: NO_RECONCILE_MS, maxBuffered: 5 });
    const user = unique("buyer");
    const order = await createOrder(user);
    const abort = new AbortController();
    cleanups.push(async () => abort.abort());
    const it = hub.watchOrder(user, order.id, 0, abort.signal)[Symbol.asyncIterator]();
    const first = await it.next();
    expect(first.value).toMatchObject({ kind: "event", event: { version: 1 } });

    // The reader does not ask for more while 20 changes are published: far more than 5 buffered.
    for (let i = 0; i < 20; i++) await bus.publish([await change(user, order.id)]);
    await delay(300);
    const versions: number[] = [];
    while (versions.length < 20) {
      const next = await Promise.race([it.next(), delay(WITHIN_MS).then(() => "hang" as const)]);
      if (next === "hang") expect.fail(`stalled after versions ${versions.join(",")}`);
      if (next.done) expect.fail("stream ended");
      if (next.value.kind === "event") versions.push(next.value.event.version);
    }
    expect(versions).toEqual(range(2, 21));
    await it.return?.();
    expect(hub.openStreams()).toBe(0);
  });

  it("reaches watchers on two instances from a change published by a third", async () => {
    const channel = unique("ch");
    const [busA, busB, busC] = await Promise.all([openBus(channel), openBus(channel), openBus(channel)]);
    const hubA = openHub(busA, { heartbeatMs: NO_RECONCILE_MS });
    const hubB = openHub(busB, { heartbeatMs: NO_RECONCILE_MS });
    const user = unique("buyer");
    const order = await createOrder(user);
    const onA = watch((s) => hubA.watchOrder(user, order.id, 1, s));
    const onB = watch((s) => hubB.watchOrders(user, null, s));
    await delay(300); // both registered (nothing to replay)
    const e = await change(user, order.id);
    await busC.publish([e]);
    await onA.until("the change on A", () => onA.versions().length === 1);
    await onB.until("the change on B", () => onB.seqs().length === 1);
    expect(onA.versions()).toEqual([2]);
    expect(onB.seqs()).toEqual([e.seq]);
  });

  describe("with one of three Redis nodes down", () => {
    let nodes: RedisNodes;
    beforeAll(async () => {
      nodes = await startRedisNodes(3);
    });
    afterAll(async () => {
      await nodes?.stopAll();
    });

    it("still delivers live changes across instances", async () => {
      const channel = unique("ch");
      const [busA, busC] = await Promise.all([openBus(channel, nodes.urls), openBus(channel, nodes.urls)]);
      const hub = openHub(busA, { heartbeatMs: NO_RECONCILE_MS });
      const user = unique("buyer");
      const order = await createOrder(user);
      const w = watch((s) => hub.watchOrder(user, order.id, 1, s));
      await nodes.stop(1);
      const started = Date.now();
      for (let i = 0; i < 3; i++) await busC.publish([await change(user, order.id)]);
      expect(Date.now() - started).toBeLessThan(WITHIN_MS);
      await w.until("2..4", () => w.versions().length >= 3);
      expect(w.versions()).toEqual([2, 3, 4]);
    });
  });

  it("answers NOT_FOUND for another user's order and for no order, before yielding anything", async () => {
    const bus = await openBus(unique("ch"));
    const hub = openHub(bus);
    const owner = unique("buyer");
    const order = await createOrder(owner);
    for (const [user, orderId] of [
      [unique("intruder"), order.id],
      [owner, newId("ord", bucketOfUser(owner))],
    ] as const) {
      const w = watch((s) => hub.watchOrder(user, orderId, 0, s));
      await w.finished;
      expect(w.items).toEqual([]);
      expect(w.error).toBeInstanceOf(DomainError);
      expect(w.error).toMatchObject({ reason: "not_found", field: "order_id" });
    }
    expect(hub.openStreams()).toBe(0);
  });

  it("ends the stream when the signal aborts, and forgets the watcher", async () => {
    const bus = await openBus(unique("ch"));
    const hub = openHub(bus, { heartbeatMs: NO_RECONCILE_MS });
    const user = unique("buyer");
    const order = await createOrder(user);
    const streams = [
      watch((s) => hub.watchOrder(user, order.id, 0, s)),
      watch((s) => hub.watchOrder(user, order.id, 1, s)),
      watch((s) => hub.watchOrders(user, null, s)),
      watch((s) => hub.watchOrders(user, 0, s)),
    ];
    await streams[0]?.until("history", () => streams[0]?.versions().length === 1);
    await delay(200);
    expect(hub.openStreams()).toBe(4);
    const started = Date.now();
    await Promise.all(streams.map((w) => w.stop()));
    expect(Date.now() - started).toBeLessThan(WITHIN_MS);
    for (const w of streams) expect([w.ended, w.error]).toEqual([true, undefined]);
    expect(hub.openStreams()).toBe(0);

    // A consumer that stops iterating (return()) also releases its registration.
    const abort = new AbortController();
    for await (const item of hub.watchOrder(user, order.id, 0, abort.signal)) {
      expect(item.kind).toBe("event");
      break;
    }
    expect(hub.openStreams()).toBe(0);
    // Already aborted: nothing is yielded and nothing registered.
    const none: WatchItem[] = [];
    for await (const item of hub.watchOrders(user, null, AbortSignal.abort())) none.push(item);
    expect([none, hub.openStreams()]).toEqual([[], 0]);
  });

  it("ends every stream on close", async () => {
    const bus = await openBus(unique("ch"));
    const hub = createWatchHub({ shards, bus, logger }, { heartbeatMs: NO_RECONCILE_MS });
    const user = unique("buyer");
    const w = watch((s) => hub.watchOrders(user, null, s));
    await delay(100);
    await hub.close();
    await w.finished;
    expect([w.ended, w.error, hub.openStreams()]).toEqual([true, undefined, 0]);
  });

  it("sends heartbeats on an idle stream", async () => {
    const bus = await openBus(unique("ch"));
    const hub = openHub(bus);
    const user = unique("buyer");
    const order = await createOrder(user);
    const w = watch((s) => hub.watchOrder(user, order.id, 1, s));
    await w.until("3 heartbeats", () => w.heartbeats() >= 3);
    const at = w.items.flatMap((i) => (i.kind === "heartbeat" ? [i.at] : []));
    expect(at[0]).toBeInstanceOf(Date);
    expect(w.versions()).toEqual([]);
  });
});
