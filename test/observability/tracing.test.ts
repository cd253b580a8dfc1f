import { randomBytes } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import { Code } from "@connectrpc/connect";
import { SpanKind } from "@opentelemetry/api";
import { InMemorySpanExporter, type ReadableSpan } from "@opentelemetry/sdk-trace";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import { OrderService } from "../../gen/shop/order/v1/order_pb.js";
import { loggerOptions } from "../../src/observability/logging.js";
import { unique } from "../harness/app.js";
import { client, transportFor } from "../harness/clients.js";
import { expectError } from "../harness/errors.js";
import { seedProduct } from "../inventory/seed.js";
import { capturedLogger, startObservedApp, type TestApp } from "./helpers.js";

// Issue 6: W3C trace context in, trace ids on the call's log lines, server and SQL spans out.

/** Tracing off (the default); logs captured at debug, where every call logs one line. */
let plain: TestApp;
let logs: ReturnType<typeof capturedLogger>;
/** Tracing on, every span kept in memory. */
let traced: TestApp;
const spans = new InMemorySpanExporter();

beforeAll(async () => {
  logs = capturedLogger("debug");
  [plain, traced] = await Promise.all([
    startObservedApp({ logger: logs.logger }),
    startObservedApp({ spanExporter: spans }),
  ]);
});
afterAll(async () => {
  await Promise.all([plain?.shutdown(), traced?.shutdown()]);
});

const PROTOCOLS = ["grpc-h2c", "connect-json-http1", "grpc-web-http1"] as const;

function newTraceparent() {
  const traceId = randomBytes(16).toString("hex");
  const spanId = randomBytes(8).toString("hex");
  return { traceId, spanId, header: `00-${traceId}-${spanId}-01` };
}

describe.each(PROTOCOLS)("trace context over %s", (protocol) => {
  it("puts the caller's trace id and the request id on the call's log lines (tracing off)", async () => {
    const inv = client(InventoryService, transportFor(protocol, plain.port));
    const { traceId, spanId, header } = newTraceparent();
    const requestId = unique("req");
    await expectError(
      inv.getProduct({ productId: "nope" }, { headers: { traceparent: header, "x-request-id": requestId } }),
      Code.InvalidArgument,
    );
    const product = await seedProduct(inv, unique("seller"));
    const ok = newTraceparent();
    await inv.getProduct({ productId: product.id }, { headers: { traceparent: ok.header } });

    const failed = await lineWhere((l) => l.requestId === requestId);
    expect(failed).toMatchObject({ trace_id: traceId, span_id: spanId, code: "InvalidArgument" });
    expect(failed.rpc).toBe("shop.inventory.v1.InventoryService/GetProduct");
    const okLine = await lineWhere((l) => l.trace_id === ok.traceId);
    expect(okLine).toMatchObject({ msg: "call ok", rpc: "shop.inventory.v1.InventoryService/GetProduct" });
    expect(okLine.requestId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("makes the server span a child of the caller's span, with one SQL span per statement under it", async () => {
    const inv = client(InventoryService, transportFor(protocol, traced.port));
    const seller = unique("seller");
    const sku = unique("sku");
    const { traceId, spanId, header } = newTraceparent();
    await inv.createProduct(
      {
        sellerId: seller,
        sku,
        name: "Red mug",
        category: "kitchen",
        price: { amountMinor: 1299n, currencyCode: "EUR" },
        initialStock: [{ warehouseId: "main", quantity: 4n }],
        idempotencyKey: unique("key"),
      },
      { headers: { traceparent: header } },
    );
    const trace = await spansOf(traceId, (s) => s.some((x) => x.kind === SpanKind.SERVER && x.ended));
    const server = trace.find((s) => s.kind === SpanKind.SERVER);
    expect(server?.name).toBe("shop.inventory.v1.InventoryService/CreateProduct");
    expect(server?.parentSpanContext?.spanId).toBe(spanId);
    expect(server?.attributes).toMatchObject({
      "rpc.system": protocol === "connect-json-http1" ? "connect_rpc" : "grpc",
      "rpc.service": "shop.inventory.v1.InventoryService",
      "rpc.method": "CreateProduct",
      "rpc.grpc.status_code": 0,
    });
    const sql = trace.filter((s) => s.kind === SpanKind.CLIENT);
    // The statement text keeps its placeholders: values are bound, never inlined.
    const insert = sql.find((s) => String(s.attributes["db.query.text"]).startsWith("insert into products"));
    expect(String(insert?.attributes["db.query.text"])).toMatch(/values \(\?, \?, \?/);
    expect(sql.length).toBeGreaterThan(1);
    const shard = traced.shards.forUser(seller).index;
    for (const s of sql) {
      expect(s.parentSpanContext?.spanId).toBe(server?.spanContext().spanId);
      expect(s.attributes).toMatchObject({ "db.system": "postgresql", "shop.shard.index": shard });
      expect(String(s.attributes["db.query.text"])).not.toBe("");
      // Statements only, never the values: no seller id, sku or name in any attribute.
      const text = JSON.stringify(s.attributes);
      for (const value of [seller, sku, "Red mug"]) expect(text).not.toContain(value);
    }
  });

  it("records a failed call's code on its span", async () => {
    const inv = client(InventoryService, transportFor(protocol, traced.port));
    const { traceId, header } = newTraceparent();
    await expectError(
      inv.getProduct({ productId: "nope" }, { headers: { traceparent: header } }),
      Code.InvalidArgument,
    );
    const [server] = await spansOf(traceId, (s) => s.length > 0);
    expect(server?.attributes).toMatchObject({
      "rpc.grpc.status_code": Code.InvalidArgument,
      "rpc.connect_rpc.error_code": "invalid_argument",
    });
    expect(server?.status.code).toBe(2); // SpanStatusCode.ERROR
  });
});

it("starts a new trace for a call without traceparent, and keeps stream statements under the stream's span", async () => {
  const orders = client(OrderService, transportFor("grpc-h2c", traced.port));
  const abort = new AbortController();
  const stream = (async () => {
    try {
      for await (const _ of orders.watchOrders({ userId: unique("buyer") }, { signal: abort.signal })) {
        // nothing changes for this user
      }
    } catch {
      // aborted below
    }
  })();
  const deadline = Date.now() + 10_000;
  while (traced.watchHub.openStreams() === 0 && Date.now() < deadline) await delay(20);
  await delay(200); // its start-position queries have run
  abort.abort();
  await stream;
  const server = await waitFor(() =>
    spans.getFinishedSpans().find((s) => s.name === "shop.order.v1.OrderService/WatchOrders"),
  );
  expect(server.parentSpanContext).toBeUndefined();
  const children = spans
    .getFinishedSpans()
    .filter((s) => s.parentSpanContext?.spanId === server.spanContext().spanId);
  expect(children.length).toBeGreaterThan(0);
  expect(children.every((s) => s.attributes["db.system"] === "postgresql")).toBe(true);
});

describe("log hygiene", () => {
  it("never logs a customer's email, a request body or a token", async () => {
    const inv = client(InventoryService, transportFor("grpc-h2c", plain.port));
    const orders = client(OrderService, transportFor("connect-json-http1", plain.port));
    const product = await seedProduct(inv, unique("seller"), { stock: { main: 2 } });
    const email = `${unique("someone")}@example.com`;
    const requestId = unique("req");
    const { order } = await orders.createOrder(
      {
        userId: unique("buyer"),
        source: { case: "items", value: { items: [{ productId: product.id, quantity: 1n }] } },
        customerEmail: email,
        idempotencyKey: unique("k"),
      },
      { headers: { "x-request-id": requestId } },
    );
    expect(order?.id).toBeDefined();
    await lineWhere((l) => l.requestId === requestId);
    const all = logs.raw.join("\n");
    expect(all).not.toContain(email);
    // The harness's clients send a bearer token (a JWT: "eyJ…") on every call: never logged.
    expect(all).not.toContain("Bearer");
    expect(all).not.toMatch(/eyJ[\w-]+\.eyJ/);
  });

  it("redacts secrets and personal data that reach a log line anyway", () => {
    const out: string[] = [];
    const log = pino(loggerOptions("info"), { write: (s: string) => out.push(s) });
    const pgError = Object.assign(new Error("duplicate key value violates unique constraint"), {
      code: "23505",
      detail: "Key (customer_email)=(a@example.com) already exists.",
    });
    log.warn({ err: pgError, headers: { authorization: "Bearer hunter2" }, customerEmail: "b@example.com" });
    const text = out.join("");
    expect(text).toContain("duplicate key value");
    for (const secret of ["a@example.com", "hunter2", "b@example.com"]) expect(text).not.toContain(secret);
    expect(text).toContain("[redacted]");
  });
});

/** The captured log line that matches, waiting briefly for it (pino writes asynchronously). */
async function lineWhere(match: (l: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  return waitFor(() => logs.lines.find(match));
}

/** The finished spans of a trace once `ready` says they are all there. */
async function spansOf(traceId: string, ready: (spans: ReadableSpan[]) => boolean): Promise<ReadableSpan[]> {
  return waitFor(() => {
    const found = spans.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
    return ready(found) ? found : undefined;
  });
}

async function waitFor<T>(find: () => T | undefined, ms = 5_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const found = find();
    if (found !== undefined) return found;
    if (Date.now() > deadline) expect.fail(`not within ${ms} ms`);
    await delay(20);
  }
}
