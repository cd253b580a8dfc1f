import * as net from "node:net";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  createClient,
  createContextKey,
  type HandlerContext,
  type Interceptor,
} from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorReasonSchema } from "../../gen/shop/common/v1/errors_pb.js";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import { OrderService } from "../../gen/shop/order/v1/order_pb.js";
import { ReservationService } from "../../gen/shop/reservation/v1/reservation_pb.js";
import { DomainError } from "../../src/errors.js";
import { type RunningServer, requestIdKey, shutdownSignalKey, startServer } from "../../src/server/server.js";
import { rejection } from "../harness/errors.js";
import { startTestServer } from "./fixture.js";
import { grpcJsGetProduct } from "./grpc-js.js";

// The connect HandlerContext and interceptor chain a call gets on the native gRPC port, compared
// with the same call on the main port (connect-node's gRPC), on a server without databases.

/** Set by the test interceptor, read by the handler: what the interceptor passed on reaches it. */
const seenKey = createContextKey<string>("not set");

/** An innermost interceptor that replaces the request's headers and sets a context value. */
const rewrite: Interceptor = (next) => async (req) => {
  req.contextValues.set(seenKey, `${req.stream ? "stream" : "unary"} ${req.method.name}`);
  const header = new Headers(req.header);
  header.set("x-rewritten", "yes");
  return next({ ...req, header });
};

/** GetProduct answers with what its context holds, as a plain object (connect normalizes it). */
function routes(router: ConnectRouter): void {
  router.service(InventoryService, {
    getProduct(_req, ctx: HandlerContext) {
      const facts = {
        protocol: ctx.protocolName,
        requestMethod: ctx.requestMethod,
        path: new URL(ctx.url).pathname,
        rpc: `${ctx.service.typeName}/${ctx.method.name}`,
        custom: ctx.requestHeader.get("x-custom"),
        rewritten: ctx.requestHeader.get("x-rewritten"),
        seen: ctx.values.get(seenKey),
        requestId: ctx.values.get(requestIdKey),
        shutdown: ctx.values.get(shutdownSignalKey).aborted,
        hasTimeout: ctx.timeoutMs() !== undefined,
        withinDeadline: (ctx.timeoutMs() ?? Number.POSITIVE_INFINITY) <= 5_000,
      };
      ctx.responseTrailer.set("x-trailer", "t");
      return { product: { id: "ctx", name: JSON.stringify(facts) } };
    },
  });
  router.service(OrderService, {
    // `after_cursor` messages of 16 KiB each (more than the connection takes at once), then for
    // user "fail" a domain error mid-stream.
    async *watchOrders(req) {
      for (let i = 0; i < Number(req.afterCursor || "0"); i++) {
        yield { message: { case: "event", value: { orderId: `o${i}`, reason: "r".repeat(16 * 1024) } } };
      }
      if (req.userId === "fail")
        throw new DomainError("not_found", "order o-missing not found", { field: "order_id" });
    },
  });
}

let server: RunningServer;
beforeAll(async () => {
  server = await startServer({
    host: "127.0.0.1",
    port: 0,
    grpcPort: 0,
    routes,
    servedServices: [InventoryService, OrderService],
    corsOrigins: [],
    maxRequestBytes: 64 * 1024,
    defaultTimeoutMs: 5_000,
    maxTimeoutMs: 10_000,
    logger: pino({ level: "silent" }),
    interceptors: [rewrite],
  });
});
afterAll(() => server.drain(1000));

describe("the handler context on the native port", () => {
  it("is the one connect-node builds for the same gRPC call on the main port", async () => {
    const ask = async (port: number) => {
      const transport = createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` });
      let trailer: Headers | undefined;
      const res = await createClient(InventoryService, transport).getProduct(
        { productId: "x" },
        {
          timeoutMs: 5_000,
          headers: { "x-custom": "c1", "x-request-id": "ctx-1" },
          onTrailer: (t) => {
            trailer = t;
          },
        },
      );
      return { facts: JSON.parse(res.product?.name ?? "{}"), trailer: trailer?.get("x-trailer") };
    };
    const native = await ask(server.grpcPort ?? expect.fail("no native port"));
    expect(native).toEqual({
      facts: {
        protocol: "grpc",
        requestMethod: "POST",
        path: "/shop.inventory.v1.InventoryService/GetProduct",
        rpc: "shop.inventory.v1.InventoryService/GetProduct",
        custom: "c1",
        rewritten: "yes",
        seen: "unary GetProduct",
        requestId: "ctx-1",
        shutdown: false,
        hasTimeout: true,
        withinDeadline: true,
      },
      trailer: "t",
    });
    expect(await ask(server.port)).toEqual(native);
  });

  it("has no timeout when the caller sets no deadline", async () => {
    const transport = createGrpcTransport({ baseUrl: `http://127.0.0.1:${server.grpcPort}` });
    const res = await createClient(InventoryService, transport).getProduct({ productId: "x" });
    expect(JSON.parse(res.product?.name ?? "{}")).toMatchObject({ hasTimeout: false });
  });

  it("answers a method left out of a service, and a service not served, UNIMPLEMENTED", async () => {
    const transport = createGrpcTransport({ baseUrl: `http://127.0.0.1:${server.grpcPort}` });
    const left = await rejection(createClient(OrderService, transport).getOrder({ orderId: "o" }));
    expect([left.code, left.rawMessage]).toEqual([
      Code.Unimplemented,
      "shop.order.v1.OrderService.GetOrder is not implemented",
    ]);
    const absent = await rejection(createClient(ReservationService, transport).getReservation({}));
    expect(absent.code).toBe(Code.Unimplemented);
  });
});

describe("server streams on the native port", () => {
  const watch = (port: number, userId: string, count: number) =>
    createClient(OrderService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` })).watchOrders({
      userId,
      afterCursor: String(count),
    });

  it("delivers every message of a stream larger than the connection's window (backpressure)", async () => {
    const ids: string[] = [];
    for await (const m of watch(server.grpcPort ?? 0, "u", 500)) {
      if (m.message.case === "event") ids.push(m.message.value.orderId);
    }
    expect(ids.length).toBe(500);
    expect(ids.at(-1)).toBe("o499");
  });

  it("ends a stream with the status of an error thrown mid-stream, as the main port does", async () => {
    const run = async (port: number) => {
      let received = 0;
      try {
        for await (const _ of watch(port, "fail", 2)) received++;
      } catch (e) {
        const err = ConnectError.from(e);
        return {
          received,
          code: err.code,
          message: err.rawMessage,
          reason: err.findDetails(ErrorReasonSchema),
        };
      }
      return { received };
    };
    const native = await run(server.grpcPort ?? 0);
    expect(native).toEqual({
      received: 2,
      code: Code.NotFound,
      message: "order o-missing not found",
      reason: [expect.objectContaining({ reason: "not_found", field: "order_id" })],
    });
    expect(await run(server.port)).toEqual(native);
  });
});

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

describe("errors and drain on the native port (the server test fixture)", () => {
  it("hides an unexpected error behind 'internal error'", async () => {
    const fixture = await startTestServer({ grpcPort: 0 });
    try {
      const out = await grpcJsGetProduct(fixture.grpcPort ?? 0, "boom");
      expect(out.ok ? undefined : [out.error.code, out.error.details]).toEqual([
        grpc.status.INTERNAL,
        "internal error",
      ]);
    } finally {
      await fixture.drain(1000);
    }
  });

  it("finishes an in-flight call, ends streams cleanly, then refuses connections", async () => {
    const fixture = await startTestServer({ grpcPort: 0 });
    const port = fixture.grpcPort ?? expect.fail("no native port");
    const transport = createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` });
    let heartbeats = 0;
    const stream = (async () => {
      for await (const _ of createClient(OrderService, transport).watchOrder({ orderId: "o1" })) heartbeats++;
      return "ended";
    })();
    const slow = createClient(InventoryService, transport).getProduct({ productId: "slow" });
    await new Promise((r) => setTimeout(r, 150)); // both are under way
    await fixture.drain(5_000);
    expect((await slow).product?.id).toBe("ok"); // not cut off by the drain
    expect(await stream).toBe("ended");
    expect(heartbeats).toBeGreaterThan(0);
    expect(await tryConnect(port)).toBe("refused");
  });

  it("cancels what is still open when the grace period is over", async () => {
    const fixture = await startTestServer({ grpcPort: 0, defaultTimeoutMs: 60_000, maxTimeoutMs: 60_000 });
    const port = fixture.grpcPort ?? expect.fail("no native port");
    const stuck = grpcJsGetProduct(port, "stuck");
    await new Promise((r) => setTimeout(r, 150));
    await fixture.drain(300);
    const out = await stuck;
    expect(out.ok).toBe(false);
    expect(await tryConnect(port)).toBe("refused");
  });
});
