import { setTimeout as delay } from "node:timers/promises";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import {
  type OrderEvent,
  OrderService,
  OrderStatus,
  type WatchOrderResponse,
  type WatchOrdersResponse,
} from "../../gen/shop/order/v1/order_pb.js";
import type { App } from "../../src/app.js";
import { startTestApp, unique } from "../harness/app.js";
import { client, transportFor } from "../harness/clients.js";
import { expectError } from "../harness/errors.js";
import { until } from "../harness/wait.js";
import { seedProduct } from "../inventory/seed.js";
import { userOnShard } from "../reservation/seed.js";

// Issue 4, test 1: two instances on the same shards and Redis; watchers on A, every change made
// through B. Each protocol: gRPC (h2c), Connect JSON over HTTP/1.1 (fetch-style streaming), gRPC-Web.

type TestApp = App & { port: number };
let a: TestApp;
let b: TestApp;
/** A third instance with 200 ms heartbeats, for the idle-stream test. */
let quick: TestApp;

beforeAll(async () => {
  [a, b, quick] = await Promise.all([
    startTestApp(),
    startTestApp(),
    startTestApp({ streamHeartbeatMs: 200 }),
  ]);
  // Subscribed on the bus before the first change, so live delivery (not the reconcile) is tested.
  await Promise.all([a.orderBus.ready, b.orderBus.ready, quick.orderBus.ready]);
});
afterAll(async () => {
  await Promise.all([a?.shutdown(), b?.shutdown(), quick?.shutdown()]);
});

/** A hang guard, not a latency target. */
const WITHIN_MS = 10_000;
const PROTOCOLS = ["grpc-h2c", "connect-json-http1", "grpc-web-http1"] as const;
const S = OrderStatus;

type Response = WatchOrderResponse | WatchOrdersResponse;

/** Reads a watch stream in the background and records its events and heartbeats. */
function record(open: (signal: AbortSignal) => AsyncIterable<Response>) {
  const abort = new AbortController();
  const events: OrderEvent[] = [];
  let heartbeats = 0;
  let error: unknown;
  let ended = false;
  const finished = (async () => {
    try {
      for await (const res of open(abort.signal)) {
        if (res.message.case === "event") events.push(res.message.value);
        else if (res.message.case === "heartbeat") heartbeats++;
      }
    } catch (e) {
      error = e;
    } finally {
      ended = true;
    }
  })();
  const until = async (what: string, check: () => boolean, ms = WITHIN_MS) => {
    const deadline = Date.now() + ms;
    while (!check()) {
      if (ended) expect.fail(`stream ended (${String(error)}) before: ${what}`);
      if (Date.now() > deadline) expect.fail(`not within ${ms} ms: ${what} (got ${keys(events).join(" ")})`);
      await delay(10);
    }
  };
  const stop = async () => {
    abort.abort();
    await finished;
  };
  return {
    events,
    heartbeats: () => heartbeats,
    error: () => error,
    finished,
    until,
    stop,
  };
}

/** "order@version" of each event: order ids differ per test, so exact lists are easy to compare. */
const keys = (events: OrderEvent[]) => events.map((e) => `${e.orderId}@${e.version}`);

describe.each(PROTOCOLS)("watch over %s", (protocol) => {
  const onA = () => client(OrderService, transportFor(protocol, a.port));
  // Changes go through B over gRPC: the protocol under test is the watcher's.
  const onB = () => client(OrderService, transportFor("grpc-h2c", b.port));
  const invB = () => client(InventoryService, transportFor("grpc-h2c", b.port));

  async function newOrder(buyer: string) {
    const product = await seedProduct(invB(), unique("seller"), { stock: { main: 5 } });
    const { order } = await onB().createOrder({
      userId: buyer,
      source: { case: "items", value: { items: [{ productId: product.id, quantity: 1n }] } },
      customerEmail: "buyer@example.com",
      idempotencyKey: unique("k"),
    });
    if (!order) throw new Error("createOrder returned no order");
    expect(order.version).toBe(1n);
    return order.id;
  }

  async function move(orderId: string, status: OrderStatus, expectedVersion: bigint) {
    const { order } = await onB().updateOrderStatus({
      orderId,
      status,
      expectedVersion,
      reason: `to ${S[status]}`,
      idempotencyKey: unique("k"),
    });
    expect(order?.version).toBe(expectedVersion + 1n);
  }

  const settled = () => delay(500); // room for a late duplicate to show up

  it("streams every change made on B to a watcher on A, in version order, and resumes without gap or duplicate", async () => {
    const buyer = userOnShard(a, PROTOCOLS.indexOf(protocol), "buyer");
    const orderId = await newOrder(buyer);
    const openStreams = a.watchHub.openStreams();

    const first = record((signal) => onA().watchOrder({ userId: buyer, orderId }, { signal }));
    await first.until("the replayed creation", () => first.events.length === 1);
    await move(orderId, S.CONFIRMED, 1n);
    await move(orderId, S.PROCESSING, 2n);
    await first.until("versions 2 and 3 live", () => first.events.length >= 3);

    // The client goes away mid-stream; a change lands while nobody watches.
    await first.stop();
    expect(first.error()).toBeDefined(); // the client reports its own cancellation
    await until("A forgets the aborted stream", () => a.watchHub.openStreams() === openStreams);
    const lastSeen = first.events.at(-1)?.version ?? 0n;
    await move(orderId, S.SHIPPED, 3n);

    const resumed = record((signal) =>
      onA().watchOrder({ userId: buyer, orderId, afterVersion: lastSeen }, { signal }),
    );
    await resumed.until("the missed version 4", () => resumed.events.length === 1);
    await move(orderId, S.DELIVERED, 4n);
    await resumed.until("version 5 live", () => resumed.events.length >= 2);
    await settled();

    expect(first.events.map((e) => e.version)).toEqual([1n, 2n, 3n]);
    expect(resumed.events.map((e) => e.version)).toEqual([4n, 5n]);
    const all = [...first.events, ...resumed.events];
    expect(all.map((e) => [e.fromStatus, e.toStatus])).toEqual([
      [S.UNSPECIFIED, S.PENDING],
      [S.PENDING, S.CONFIRMED],
      [S.CONFIRMED, S.PROCESSING],
      [S.PROCESSING, S.SHIPPED],
      [S.SHIPPED, S.DELIVERED],
    ]);
    expect(all.map((e) => e.kind)).toEqual(["created", "status", "status", "status", "status"]);
    expect(all[1]?.reason).toBe("to CONFIRMED");
    for (const e of all) {
      expect(e.orderId).toBe(orderId);
      expect(e.cursor).not.toBe("");
      expect(e.createTime && timestampDate(e.createTime)).toBeInstanceOf(Date);
    }
    await resumed.stop();
  });

  it("streams a user's changes on every order, and resumes after a cursor", async () => {
    const buyer = userOnShard(a, (PROTOCOLS.indexOf(protocol) + 1) % 3, "buyer");
    const o1 = await newOrder(buyer);
    const openStreams = a.watchHub.openStreams();

    const live = record((signal) => onA().watchOrders({ userId: buyer }, { signal }));
    // Registered and past its start position (read right after registering) before the first change.
    await until("the stream is open on A", () => a.watchHub.openStreams() > openStreams);
    await delay(300);
    await move(o1, S.CONFIRMED, 1n);
    const o2 = await newOrder(buyer);
    await move(o2, S.CONFIRMED, 1n);
    await live.until("3 live changes", () => live.events.length >= 3);
    const cursor = live.events[1]?.cursor ?? ""; // after o2's creation
    await live.stop();

    await move(o1, S.PROCESSING, 2n);
    const resumed = record((signal) => onA().watchOrders({ userId: buyer, afterCursor: cursor }, { signal }));
    await resumed.until("the two changes after the cursor", () => resumed.events.length >= 2);
    await move(o1, S.SHIPPED, 3n);
    await resumed.until("one more live", () => resumed.events.length >= 3);
    await settled();

    expect(keys(live.events)).toEqual([`${o1}@2`, `${o2}@1`, `${o2}@2`]);
    expect(keys(resumed.events)).toEqual([`${o2}@2`, `${o1}@3`, `${o1}@4`]);
    const cursors = [...live.events, ...resumed.events.slice(1)].map((e) => e.cursor);
    expect(new Set(cursors).size).toBe(cursors.length);
    await resumed.stop();
    await until("A forgets both streams", () => a.watchHub.openStreams() === openStreams);
  });

  it("answers NOT_FOUND for another user's order", async () => {
    const owner = userOnShard(a, 0, "buyer");
    const orderId = await newOrder(owner);
    const intruder = unique("intruder");
    const drain = async () => {
      for await (const _ of onA().watchOrder({ userId: intruder, orderId })) expect.fail("yielded a message");
    };
    await expectError(drain(), Code.NotFound, "order_id");
  });

  it("sends heartbeats on an idle stream", async () => {
    const buyer = userOnShard(quick, 1, "buyer");
    const orderId = await newOrder(buyer);
    const quickClient = client(OrderService, transportFor(protocol, quick.port));
    const idle = record((signal) =>
      quickClient.watchOrder({ userId: buyer, orderId, afterVersion: 1n }, { signal }),
    );
    await idle.until("3 heartbeats", () => idle.heartbeats() >= 3);
    expect(idle.events).toEqual([]);
    await idle.stop();
    await until("the idle stream is forgotten", () => quick.watchHub.openStreams() === 0);
  });
});
