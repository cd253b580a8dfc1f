import { setTimeout as delay } from "node:timers/promises";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import { type OrderEvent, OrderService, OrderStatus } from "../../gen/shop/order/v1/order_pb.js";
import type { App } from "../../src/app.js";
import { startTestApp, unique } from "../harness/app.js";
import { bearer } from "../harness/auth.js";
import { client, transportFor } from "../harness/clients.js";
import { until } from "../harness/wait.js";
import { seedProduct } from "../inventory/seed.js";
import { userOnShard } from "../reservation/seed.js";

// Issue 4, test 2: 1,000 concurrent watchers on one instance each receive their order's change within
// a bounded time, and every stream is released at the end.

let app: App & { port: number };
beforeAll(async () => {
  app = await startTestApp();
  await app.orderBus.ready;
});
afterAll(async () => {
  await app?.shutdown();
});

const WATCHERS = 1000;
const ORDERS = 20;
/** Of each order's 50 watchers, this many use WatchOrders (the buyer's stream), the rest WatchOrder. */
const USER_WATCHERS_PER_ORDER = 10;
/** The server allows 1,000 concurrent streams per HTTP/2 connection: spread over several. */
const CONNECTIONS = 4;
const WITHIN_MS = 30_000;

describe("1,000 concurrent watchers", () => {
  it("each receive one change, and all streams close", { timeout: 120_000 }, async () => {
    const ord = client(OrderService, transportFor("grpc-h2c", app.port));
    const inv = client(InventoryService, transportFor("grpc-h2c", app.port));
    // One connection per transport (connect-node keeps one HTTP/2 session per transport).
    const watchClients: Client<typeof OrderService>[] = Array.from({ length: CONNECTIONS }, () =>
      createClient(
        OrderService,
        createGrpcTransport({ baseUrl: `http://127.0.0.1:${app.port}`, interceptors: [bearer()] }),
      ),
    );

    const orders = await Promise.all(
      Array.from({ length: ORDERS }, async (_, i) => {
        const buyer = userOnShard(app, i % 3, "buyer");
        const product = await seedProduct(inv, userOnShard(app, i % 3, "seller"), { stock: { main: 1 } });
        const { order } = await ord.createOrder({
          userId: buyer,
          source: { case: "items", value: { items: [{ productId: product.id, quantity: 1n }] } },
          customerEmail: "buyer@example.com",
          idempotencyKey: unique("k"),
        });
        if (!order) throw new Error("createOrder returned no order");
        const { events } = await ord.getOrderHistory({ userId: buyer, orderId: order.id });
        return { id: order.id, buyer, createdCursor: events[0]?.cursor ?? "" };
      }),
    );

    const abort = new AbortController();
    const received: OrderEvent[][] = Array.from({ length: WATCHERS }, () => []);
    const failures: unknown[] = [];
    const streams = Array.from({ length: WATCHERS }, (_, w) => {
      const order = orders[w % ORDERS] as (typeof orders)[number];
      const c = watchClients[w % CONNECTIONS] as Client<typeof OrderService>;
      const userStream = Math.floor(w / ORDERS) < USER_WATCHERS_PER_ORDER;
      const stream = userStream
        ? c.watchOrders({ userId: order.buyer, afterCursor: order.createdCursor }, { signal: abort.signal })
        : c.watchOrder(
            { userId: order.buyer, orderId: order.id, afterVersion: 1n },
            { signal: abort.signal },
          );
      return (async () => {
        try {
          for await (const res of stream) {
            if (res.message.case === "event") received[w]?.push(res.message.value);
          }
        } catch (e) {
          if (!abort.signal.aborted) failures.push(e);
        }
      })();
    });

    // Every stream registered (live events buffer from registration on) before the changes.
    await until("1,000 streams open on the server", () => app.watchHub.openStreams() === WATCHERS, WITHIN_MS);
    const started = Date.now();
    await Promise.all(
      orders.map((o) =>
        ord.updateOrderStatus({
          orderId: o.id,
          status: OrderStatus.CONFIRMED,
          expectedVersion: 1n,
          reason: "go",
          idempotencyKey: unique("k"),
        }),
      ),
    );
    await until("every watcher has its change", () => received.every((r) => r.length >= 1), WITHIN_MS);
    const tookMs = Date.now() - started;
    await delay(500); // room for a duplicate to show up
    expect(failures).toEqual([]);
    for (const [w, events] of received.entries()) {
      const order = orders[w % ORDERS];
      expect(events.map((e) => [e.orderId, e.version, e.toStatus])).toEqual([
        [order?.id, 2n, OrderStatus.CONFIRMED],
      ]);
    }
    expect(tookMs).toBeLessThan(WITHIN_MS);

    abort.abort();
    await Promise.all(streams);
    await until("every stream released on the server", () => app.watchHub.openStreams() === 0, 10_000);
  });
});
