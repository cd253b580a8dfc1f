import * as net from "node:net";
import { createClient } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import { OrderService } from "../../gen/shop/order/v1/order_pb.js";
import { slowMs, startTestServer, transports } from "./fixture.js";
import { grpcJsGetProduct } from "./grpc-js.js";

/** Resolves with "refused" when nothing listens on the port any more. */
function tryConnect(port: number): Promise<"connected" | "refused"> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve("connected");
    });
    socket.once("error", () => resolve("refused"));
  });
}

describe.each(["grpc-h2c", "connect-json-http1"])("drain over %s", (name) => {
  it("finishes an in-flight unary call, ends streams, then refuses connections", async () => {
    const server = await startTestServer();
    const transport = transports(server.baseUrl)[name];
    if (transport === undefined) throw new Error(name);
    const inventory = createClient(InventoryService, transport);
    const orders = createClient(OrderService, transport);

    let heartbeats = 0;
    const stream = (async () => {
      for await (const _ of orders.watchOrder({ orderId: "o1" })) heartbeats++;
      return "ended";
    })();
    const slow = inventory.getProduct({ productId: "slow" });
    await new Promise((r) => setTimeout(r, 150)); // both are under way

    const started = Date.now();
    await server.drain(5_000);
    const drainMs = Date.now() - started;

    expect((await slow).product?.id).toBe("ok"); // not cut off by the drain
    expect(await stream).toBe("ended"); // ended cleanly on shutdownSignal, not by an error
    expect(heartbeats).toBeGreaterThan(0);
    expect(drainMs).toBeGreaterThanOrEqual(slowMs - 200); // waited for the slow call...
    expect(drainMs).toBeLessThan(4_000); // ...but not for the grace period
    expect(server.health.get("")).toBe("NOT_SERVING");
    expect(await tryConnect(server.port)).toBe("refused");
  });
});

describe("drain", () => {
  it("destroys what is still open when the grace period is over", async () => {
    const server = await startTestServer({ defaultTimeoutMs: 60_000, maxTimeoutMs: 60_000 });
    const stuck = grpcJsGetProduct(server.port, "stuck");
    await new Promise((r) => setTimeout(r, 150));
    const started = Date.now();
    await server.drain(300);
    expect(Date.now() - started).toBeLessThan(2_000);
    const out = await stuck;
    expect(out.ok).toBe(false);
    expect(await tryConnect(server.port)).toBe("refused");
  });

  it("is idempotent: a second drain waits for the first", async () => {
    const server = await startTestServer();
    await Promise.all([server.drain(1000), server.drain(1000)]);
    expect(server.shutdownSignal.aborted).toBe(true);
  });
});
