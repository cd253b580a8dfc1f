import * as http2 from "node:http2";
import { setTimeout as delay } from "node:timers/promises";
import { Code, createClient } from "@connectrpc/connect";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { GrpcReflection } from "grpc-js-reflection-client";
import { type Logger, pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorReasonSchema } from "../../gen/shop/common/v1/errors_pb.js";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import { OrderService, OrderStatus } from "../../gen/shop/order/v1/order_pb.js";
import type { App } from "../../src/app.js";
import { startTestApp, unique } from "../harness/app.js";
import { bearer, defaultTestToken, token, userToken } from "../harness/auth.js";
import { rejection } from "../harness/errors.js";
import { until } from "../harness/wait.js";
import { seedProduct } from "../inventory/seed.js";

// The native gRPC port (src/server/grpc-native.ts) of a real app, called with stock @grpc/grpc-js
// clients, and compared with the main port where both should answer alike.

type LogLine = Record<string, unknown> & { msg: string };
const logs: LogLine[] = [];
const logger: Logger = pino({ level: "debug" }, { write: (l: string) => logs.push(JSON.parse(l)) });

const maxRequestBytes = 64 * 1024;
const defaultDeadlineMs = 2_000;
let app: App & { port: number };
let grpcPort: number;

beforeAll(async () => {
  app = await startTestApp({ maxRequestBytes, defaultDeadlineMs }, { logger });
  grpcPort = app.server.grpcPort ?? expect.fail("no native gRPC port");
  await app.orderBus.ready;
});
afterAll(async () => {
  await app?.shutdown();
});

/** A stock grpc-js client constructor from a .proto file (no token unless a call's metadata has one). */
function clientOf(port: number, file: string, service: string, includeDirs = ["proto"]) {
  const def = protoLoader.loadSync(file, {
    includeDirs,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const ctor = service
    .split(".")
    .reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], grpc.loadPackageDefinition(def));
  return new (ctor as grpc.ServiceClientConstructor)(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
}

const inventoryOn = (port: number) =>
  clientOf(port, "shop/inventory/v1/inventory.proto", "shop.inventory.v1.InventoryService");

/** Metadata with a bearer token (the default operator + service one unless told otherwise). */
function auth(bearerToken: string | null = defaultTestToken(), extra: Record<string, string> = {}) {
  const m = new grpc.Metadata();
  if (bearerToken !== null) m.set("authorization", `Bearer ${bearerToken}`);
  for (const [k, v] of Object.entries(extra)) m.set(k, v);
  return m;
}

interface Answer {
  value?: Record<string, unknown>;
  error?: grpc.ServiceError;
  header?: grpc.Metadata;
}

/** One unary call with its response header (initial metadata) and its outcome. */
function unary(
  client: grpc.Client,
  method: string,
  request: object,
  metadata = auth(),
  options: grpc.CallOptions = {},
): Promise<Answer> {
  return new Promise((resolve) => {
    const out: Answer = {};
    type Method = (
      request: object,
      metadata: grpc.Metadata,
      options: grpc.CallOptions,
      callback: (error: grpc.ServiceError | null, value: Record<string, unknown>) => void,
    ) => grpc.ClientUnaryCall;
    const fn = (client as unknown as Record<string, Method | undefined>)[method];
    if (fn === undefined) throw new Error(`no method ${method}`);
    const call = fn.call(client, request, metadata, options, (error, value) =>
      resolve(Object.assign(out, error ? { error } : { value })),
    );
    call.on("metadata", (header: grpc.Metadata) => {
      out.header = header;
    });
  });
}

/** The google.rpc.Status a gRPC error carries in grpc-status-details-bin, decoded by connect. */
function statusDetails(error: grpc.ServiceError | undefined) {
  const bin = error?.metadata.get("grpc-status-details-bin")[0];
  if (!(bin instanceof Buffer)) return expect.fail("no grpc-status-details-bin");
  const err = findTrailerError(new Headers({ "grpc-status-details-bin": bin.toString("base64") }));
  return { bin, err };
}

const connectOn = (port: number) =>
  createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}`, interceptors: [bearer()] });

describe("the native gRPC port", () => {
  it("is a second port, next to the main one", () => {
    expect(grpcPort).toBeGreaterThan(0);
    expect(grpcPort).not.toBe(app.port);
  });

  it("answers a unary call and echoes the caller's x-request-id (or a fresh one)", async () => {
    const inv = createClient(InventoryService, connectOn(grpcPort));
    const product = await seedProduct(inv, unique("native"), { stock: { main: 4 } });
    const client = inventoryOn(grpcPort);
    try {
      const answer = await unary(
        client,
        "GetProduct",
        { productId: product.id },
        auth(defaultTestToken(), { "x-request-id": "native-req-1" }),
      );
      expect(answer.error).toBeUndefined();
      expect(answer.value?.product).toMatchObject({
        id: product.id,
        stock: [{ warehouseId: "main", available: "4" }],
      });
      expect(answer.header?.get("x-request-id")).toEqual(["native-req-1"]);
      const fresh = await unary(client, "GetProduct", { productId: product.id });
      expect(String(fresh.header?.get("x-request-id")[0])).toMatch(/^[0-9a-f-]{36}$/);
    } finally {
      client.close();
    }
  });

  it("goes through the same interceptors: logged with its request id and counted in the metrics", async () => {
    const client = inventoryOn(grpcPort);
    try {
      await unary(
        client,
        "GetProduct",
        { productId: "bogus" },
        auth(defaultTestToken(), { "x-request-id": "native-log-1" }),
      );
    } finally {
      client.close();
    }
    const line = logs.find((l) => l.requestId === "native-log-1" && l.msg === "call failed");
    expect(line).toMatchObject({
      rpc: "shop.inventory.v1.InventoryService/GetProduct",
      code: "InvalidArgument",
    });
    const text = await app.metrics.metrics();
    const count =
      /^rpc_server_duration_seconds_count\{[^}]*method="GetProduct",code="invalid_argument"\} (\d+)$/m.exec(
        text,
      );
    expect(Number(count?.[1])).toBeGreaterThan(0);
  });

  it("maps a domain error exactly as the main port does: code, field-named message, status details", async () => {
    const [native, main] = [inventoryOn(grpcPort), inventoryOn(app.port)];
    try {
      const onNative = await unary(native, "GetProduct", { productId: "bogus" });
      const onMain = await unary(main, "GetProduct", { productId: "bogus" });
      expect(onNative.error?.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(onNative.error?.details).toContain("product_id");
      // connect-node percent-encodes grpc-message with encodeURIComponent, grpc-js decodes with
      // decodeURI: from the main port a grpc-js caller sees "product_id%3A …"; here the plain text.
      expect(onNative.error?.details).toBe(decodeURIComponent(onMain.error?.details ?? ""));
      const details = statusDetails(onNative.error);
      expect(details.err?.code).toBe(Code.InvalidArgument);
      expect(details.err?.findDetails(ErrorReasonSchema)).toMatchObject([
        { reason: "invalid_argument", field: "product_id" },
      ]);
      expect(details.bin.equals(statusDetails(onMain.error).bin)).toBe(true);
    } finally {
      native.close();
      main.close();
    }
    // A connect gRPC client reads the same error from either port.
    const [a, b] = await Promise.all(
      [grpcPort, app.port].map((port) =>
        rejection(
          createClient(InventoryService, connectOn(port)).getProduct({
            productId: "prd_00000000000000000000000000",
          }),
        ),
      ),
    );
    expect([a?.code, a?.rawMessage, a?.findDetails(ErrorReasonSchema)]).toEqual([
      b?.code,
      b?.rawMessage,
      b?.findDetails(ErrorReasonSchema),
    ]);
    expect(a?.code).toBe(Code.NotFound);
  });

  it("refuses calls without a valid token (UNAUTHENTICATED) and with too few scopes (PERMISSION_DENIED)", async () => {
    const client = inventoryOn(grpcPort);
    try {
      const none = await unary(client, "ListProducts", {}, auth(null, { "x-request-id": "native-noauth" }));
      expect(none.error?.code).toBe(grpc.status.UNAUTHENTICATED);
      expect(none.error?.details).toBe("missing bearer token");
      expect(none.header?.get("x-request-id")).toEqual(["native-noauth"]);
      expect(none.header?.get("www-authenticate")).toEqual(["Bearer"]);
      const bad = await unary(client, "ListProducts", {}, auth(token({ audience: "someone-else" })));
      expect(bad.error?.code).toBe(grpc.status.UNAUTHENTICATED);
      const garbage = await unary(client, "ListProducts", {}, auth("not.a.jwt"));
      expect(garbage.error?.code).toBe(grpc.status.UNAUTHENTICATED);
      const buyer = await unary(client, "CheckStockInvariant", {}, auth(userToken(unique("buyer"))));
      expect(buyer.error?.code).toBe(grpc.status.PERMISSION_DENIED);
    } finally {
      client.close();
    }
    expect(
      logs.some((l) => l.requestId === "native-noauth" && l.msg === "call rejected before its body was read"),
    ).toBe(true);
  });

  it("rejects an unauthenticated call before its request message arrives", async () => {
    // Headers only, the stream left open: the gate must answer without waiting for a message.
    const session = http2.connect(`http://127.0.0.1:${grpcPort}`);
    session.on("error", () => {});
    const req = session.request(
      {
        ":method": "POST",
        ":path": "/shop.inventory.v1.InventoryService/GetProduct",
        "content-type": "application/grpc",
        te: "trailers",
      },
      { endStream: false },
    );
    try {
      const status = await new Promise<string>((resolve, reject) => {
        req.on("response", (h) => {
          if (h["grpc-status"] !== undefined) resolve(String(h["grpc-status"]));
        });
        req.on("trailers", (t) => resolve(String(t["grpc-status"])));
        req.on("error", reject);
        req.resume();
      });
      expect(Number(status)).toBe(grpc.status.UNAUTHENTICATED);
    } finally {
      req.close(http2.constants.NGHTTP2_CANCEL);
      session.close();
    }
  });

  it("answers DEADLINE_EXCEEDED at the server's default deadline, and the stalled write never commits", async () => {
    const inv = createClient(InventoryService, connectOn(app.port));
    const product = await seedProduct(inv, unique("native"), { stock: { main: 10 } });
    const shard = app.shards.forId(product.id, "prd", "product_id");
    let release = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    // Our own transaction holds the stock row, so AdjustStock's UPDATE waits past the deadline.
    const locked = shard.fork().transactional(async (tx) => {
      await tx.execute("select 1 from stock where product_id = ? for update", [product.id]);
      await held;
    });
    await delay(100);
    const client = inventoryOn(grpcPort);
    try {
      // No deadline from the caller: only the server's DEFAULT_DEADLINE_MS can end this call.
      const answer = await unary(client, "AdjustStock", {
        productId: product.id,
        warehouseId: "main",
        delta: "5",
        reason: "late delivery",
        idempotencyKey: unique("k"),
      });
      expect(answer.error?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    } finally {
      release();
      await locked;
      client.close();
    }
    const { product: after } = await inv.getProduct({ productId: product.id });
    expect(after?.stock[0]?.available).toBe(10n);
  });

  it("rejects a message over MAX_REQUEST_BYTES with RESOURCE_EXHAUSTED", async () => {
    const client = inventoryOn(grpcPort);
    try {
      const answer = await unary(client, "CreateProduct", {
        sellerId: unique("big"),
        sku: "BIG-1",
        name: "x".repeat(maxRequestBytes + 1),
        price: { amountMinor: "100", currencyCode: "EUR" },
        idempotencyKey: unique("k"),
      });
      expect(answer.error?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    } finally {
      client.close();
    }
  });

  it("serves gRPC only: a Connect call is refused", async () => {
    const transport = createConnectTransport({ baseUrl: `http://127.0.0.1:${grpcPort}`, httpVersion: "2" });
    const err = await rejection(createClient(InventoryService, transport).listProducts({}));
    expect(err.code).not.toBe(Code.Unauthenticated); // refused by grpc-js (415), not by our gate
  });
});

describe("server streams on the native port", () => {
  type Event = { version: string; toStatus: string };
  type WatchMessage = { event?: Event; heartbeat?: object };

  /** Opens a WatchOrder / WatchOrders stream with a stock grpc-js client; `ended` is its final status. */
  function watch(method: "WatchOrder" | "WatchOrders", request: object, options: grpc.CallOptions = {}) {
    const client = clientOf(grpcPort, "shop/order/v1/order.proto", "shop.order.v1.OrderService");
    type Open = (r: object, m: grpc.Metadata, o: grpc.CallOptions) => grpc.ClientReadableStream<WatchMessage>;
    const open = (client as unknown as Record<string, Open | undefined>)[method] ?? expect.fail(method);
    const requestId = unique("watch");
    const stream = open.call(
      client,
      request,
      auth(defaultTestToken(), { "x-request-id": requestId }),
      options,
    );
    const events: Event[] = [];
    stream.on("data", (m: WatchMessage) => {
      if (m.event) events.push(m.event);
    });
    const ended = new Promise<grpc.StatusObject>((resolve) => stream.on("status", resolve));
    stream.on("error", () => {}); // the status above says how it ended
    return { client, stream, events, ended, requestId };
  }

  it("streams a WatchOrder event for a status change, and lets go of the stream on cancel", async () => {
    const inv = createClient(InventoryService, connectOn(grpcPort));
    const orders = createClient(OrderService, connectOn(grpcPort));
    const product = await seedProduct(inv, unique("seller"), { stock: { main: 3 } });
    const buyer = unique("buyer");
    const { order } = await orders.createOrder({
      userId: buyer,
      source: { case: "items", value: { items: [{ productId: product.id, quantity: 1n }] } },
      customerEmail: "buyer@example.com",
      idempotencyKey: unique("k"),
    });
    const orderId = order?.id ?? expect.fail("no order");
    const before = app.watchHub.openStreams();
    const w = watch("WatchOrder", { userId: buyer, orderId });
    try {
      await until("the replayed creation", () => w.events.length === 1);
      expect(app.watchHub.openStreams()).toBe(before + 1);
      await orders.updateOrderStatus({
        orderId,
        status: OrderStatus.CONFIRMED,
        expectedVersion: 1n,
        reason: "paid",
        idempotencyKey: unique("k"),
      });
      await until("the live status change", () => w.events.length === 2);
      expect(w.events.map((e) => [e.version, e.toStatus])).toEqual([
        ["1", "ORDER_STATUS_PENDING"],
        ["2", "ORDER_STATUS_CONFIRMED"],
      ]);
    } finally {
      w.stream.cancel();
      w.client.close();
    }
    expect((await w.ended).code).toBe(grpc.status.CANCELLED);
    await until("the server ends the cancelled stream", () => app.watchHub.openStreams() === before);
  });

  it("ends a watch at the caller's deadline, and the server's handler ends too", async () => {
    const w = watch("WatchOrders", { userId: unique("buyer") }, { deadline: Date.now() + 500 });
    const status = await w.ended;
    w.client.close();
    expect(status.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    await until("the handler's outcome is logged", () =>
      logs.some((l) => l.requestId === w.requestId && l.msg.startsWith("call ")),
    );
  });
});

describe("health and reflection on the native port", () => {
  it("answers grpc.health.v1.Health/Check over grpc-js", async () => {
    const health = clientOf(grpcPort, "health/v1/health.proto", "grpc.health.v1.Health", [
      "node_modules/grpc-health-check/proto",
    ]);
    try {
      // No token: health is public on both ports.
      const overall = await unary(health, "Check", { service: "" }, new grpc.Metadata());
      expect(overall.value).toEqual({ status: "SERVING" });
      const inv = await unary(
        health,
        "Check",
        { service: "shop.inventory.v1.InventoryService" },
        new grpc.Metadata(),
      );
      expect(inv.value).toEqual({ status: "SERVING" });
      const unknown = await unary(health, "Check", { service: "no.such.Service" }, new grpc.Metadata());
      expect(unknown.error?.code).toBe(grpc.status.NOT_FOUND);
    } finally {
      health.close();
    }
  });

  it("lists the services over reflection (a bidi stream)", async () => {
    const reflection = new GrpcReflection(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure());
    expect(await reflection.listServices()).toEqual(
      expect.arrayContaining([
        "shop.inventory.v1.InventoryService",
        "shop.reservation.v1.ReservationService",
        "shop.order.v1.OrderService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
      ]),
    );
    const methods = await reflection.listMethods("shop.order.v1.OrderService");
    expect(methods.map((m) => m.name)).toContain("WatchOrder");
  });
});

describe("GRPC_PORT=off", () => {
  const listeners = () => process.getActiveResourcesInfo().filter((r) => r === "TCPServerWrap").length;

  it("starts no second port", async () => {
    const before = listeners();
    const off = await startTestApp({ grpcPort: null });
    try {
      expect(off.server.grpcPort).toBeNull();
      expect(listeners() - before).toBe(1);
    } finally {
      await off.shutdown();
    }
    const on = await startTestApp();
    try {
      expect(listeners() - before).toBe(2);
    } finally {
      await on.shutdown();
    }
  });
});
