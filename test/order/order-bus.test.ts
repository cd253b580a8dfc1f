import { setTimeout as delay } from "node:timers/promises";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { OrderEventView } from "../../src/order/order.model.js";
import { createOrderBus, type OrderBus } from "../../src/order/order-bus.js";
import { unique } from "../harness/app.js";
import { type RedisNodes, startRedisNodes } from "../harness/redis-nodes.js";
import { until } from "../harness/wait.js";

// Own Redis nodes: one is stopped and restarted here.
let nodes: RedisNodes;
const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });
const opened: OrderBus[] = [];

beforeAll(async () => {
  nodes = await startRedisNodes(3);
});
afterEach(async () => {
  await Promise.all(opened.splice(0).map((b) => b.close()));
});
afterAll(async () => {
  await nodes?.stopAll();
});

/** A hang guard, not a latency target. */
const WITHIN_MS = 5000;

async function openBus(channel: string): Promise<OrderBus> {
  const bus = createOrderBus({ redisUrls: nodes.urls, logger, channel });
  opened.push(bus);
  await bus.ready;
  return bus;
}

function event(orderId: string, version: number, seq = version): OrderEventView {
  return {
    userId: "user-bus",
    seq,
    orderId,
    version,
    kind: "status",
    fromStatus: "pending",
    toStatus: "confirmed",
    reason: "because",
    actor: "user-bus",
    createdAt: new Date("2025-01-02T03:04:05.678Z"),
  };
}

/** Everything a bus delivers locally, in arrival order. */
function record(bus: OrderBus): OrderEventView[] {
  const got: OrderEventView[] = [];
  bus.subscribe((e) => got.push(e));
  return got;
}

describe("order bus", () => {
  it("delivers each published event exactly once to every instance, dates intact", async () => {
    const channel = unique("ch");
    const [a, b, publisher] = await Promise.all([openBus(channel), openBus(channel), openBus(channel)]);
    const gotA = record(a);
    const gotB = record(b);
    const sent = [event("ord_1", 1), event("ord_1", 2), event("ord_2", 1, 3)];
    await publisher.publish(sent);
    await until("3 events on both", () => gotA.length >= 3 && gotB.length >= 3);
    // The other nodes' copies arrive within milliseconds; give them time to show up if not deduplicated.
    await delay(300);
    expect(gotA).toEqual(sent);
    expect(gotB).toEqual(sent);
    expect(gotA[0]?.createdAt).toBeInstanceOf(Date);
  });

  it("stops delivering to an unsubscribed listener and ignores other channels", async () => {
    const channel = unique("ch");
    const [a, other] = await Promise.all([openBus(channel), openBus(unique("ch"))]);
    const kept: OrderEventView[] = [];
    a.subscribe((e) => kept.push(e));
    const dropped: OrderEventView[] = [];
    const off = a.subscribe((e) => dropped.push(e));
    off();
    await other.publish([event("ord_x", 1)]);
    await a.publish([event("ord_y", 1)]);
    await until("own event", () => kept.length >= 1);
    await delay(200);
    expect(kept.map((e) => e.orderId)).toEqual(["ord_y"]);
    expect(dropped).toEqual([]);
  });

  it("keeps delivering with one node of three down; publish neither throws nor stalls", async () => {
    const channel = unique("ch");
    const [a, publisher] = await Promise.all([openBus(channel), openBus(channel)]);
    const got = record(a);
    const resubscribed: number[] = [];
    a.onResubscribe(() => resubscribed.push(Date.now()));
    await nodes.stop(0);
    try {
      const started = Date.now();
      await publisher.publish([event("ord_down", 1)]);
      expect(Date.now() - started).toBeLessThan(WITHIN_MS);
      await until("event with node 0 down", () => got.length === 1);
    } finally {
      resubscribed.length = 0; // the first subscriptions of nodes 1 and 2 may have been counted
      await nodes.start(0);
    }
    // The node's subscription comes back on its own, and the hub is told so it can re-check.
    await until("resubscribed to node 0", () => resubscribed.length >= 1);
    await publisher.publish([event("ord_down", 2)]);
    await until("event after the node came back", () => got.length === 2);
    await delay(300);
    expect(got.map((e) => e.version)).toEqual([1, 2]);
  });

  it("resolves publish when every node is down", async () => {
    const bus = createOrderBus({
      redisUrls: ["redis://127.0.0.1:1", "redis://127.0.0.1:2"],
      logger,
      channel: unique("ch"),
    });
    opened.push(bus);
    const started = Date.now();
    await expect(bus.publish([event("ord_none", 1)])).resolves.toBeUndefined();
    expect(Date.now() - started).toBeLessThan(WITHIN_MS);
  });
});
