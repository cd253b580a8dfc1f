/**
 * Issue 6: a caller sees and changes only its own reservations and orders (another user's is
 * NOT_FOUND, streams too); sellers manage only their products; operator RPCs need the operator
 * scope; a service principal acts for the users it names. Over Connect and gRPC.
 */
import { type Client, Code, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import { OrderService, OrderStatus, PaymentStatus } from "../../gen/shop/order/v1/order_pb.js";
import { ReservationService } from "../../gen/shop/reservation/v1/reservation_pb.js";
import type { App } from "../../src/app.js";
import { startTestApp, unique } from "../harness/app.js";
import { bearer, token } from "../harness/auth.js";
import { client, MAIN_TRANSPORTS, transportFor, transports } from "../harness/clients.js";
import { expectError } from "../harness/errors.js";
import { seedProduct } from "../inventory/seed.js";

let app: App & { port: number };
beforeAll(async () => {
  app = await startTestApp();
});
afterAll(async () => {
  await app?.shutdown();
});

interface Clients {
  inv: Client<typeof InventoryService>;
  res: Client<typeof ReservationService>;
  ord: Client<typeof OrderService>;
}

/** Clients that call as `sub` with `scopes` over one transport. */
function as(transportName: string, sub: string, scopes: string[] = []): Clients {
  const signed = token({ sub, scopes });
  const t = transports(app.port, [bearer(() => signed)])[transportName];
  if (!t) throw new Error(transportName);
  return {
    inv: createClient(InventoryService, t),
    res: createClient(ReservationService, t),
    ord: createClient(OrderService, t),
  };
}

const key = () => unique("k");
const EUR = (n: number) => ({ amountMinor: BigInt(n), currencyCode: "EUR" });

describe.each(MAIN_TRANSPORTS)("over %s", (transportName) => {
  let productId: string;
  let alice: string;
  let bob: string;
  let a: Clients;
  let b: Clients;
  let reservationId: string;
  let orderId: string;

  beforeAll(async () => {
    const operator = client(InventoryService, transportFor(transportName, app.port));
    productId = (await seedProduct(operator, unique("seller"), { stock: { main: 50 } })).id;
    alice = unique("alice");
    bob = unique("bob");
    a = as(transportName, alice);
    b = as(transportName, bob);
    // Alice acts with an empty user_id: it means her own (the token's subject).
    const r = await a.res.createReservation({
      items: [{ productId, quantity: 1n }],
      idempotencyKey: key(),
    });
    reservationId = r.reservation?.id ?? "";
    expect(r.reservation?.userId).toBe(alice);
    const o = await a.ord.createOrder({
      source: { case: "items", value: { items: [{ productId, quantity: 1n }] } },
      customerEmail: "alice@example.com",
      idempotencyKey: key(),
    });
    orderId = o.order?.id ?? "";
    expect(o.order?.userId).toBe(alice);
  });

  it("the owner reads her objects with or without naming herself", async () => {
    expect((await a.res.getReservation({ reservationId })).reservation?.id).toBe(reservationId);
    expect((await a.res.getReservation({ userId: alice, reservationId })).reservation?.id).toBe(
      reservationId,
    );
    expect((await a.ord.getOrder({ orderId })).order?.id).toBe(orderId);
    expect((await a.ord.listOrders({ userId: alice })).orders.map((o) => o.id)).toContain(orderId);
    expect((await a.res.listReservations({})).reservations.map((r) => r.id)).toContain(reservationId);
    expect((await a.ord.getOrderHistory({ orderId })).events).toHaveLength(1);
  });

  it.each([
    ["naming the owner", () => alice],
    ["naming himself", () => bob],
    ["naming nobody", () => ""],
  ])("another user gets NOT_FOUND for her reservation and orders, %s", async (_name, user) => {
    const userId = user();
    const nf = (call: Promise<unknown>, field: string) => expectError(call, Code.NotFound, field);
    await nf(b.res.getReservation({ userId, reservationId }), "reservation_id");
    await nf(b.res.releaseReservation({ userId, reservationId, idempotencyKey: key() }), "reservation_id");
    await nf(
      b.res.extendReservation({ userId, reservationId, ttl: { seconds: 60n }, idempotencyKey: key() }),
      "reservation_id",
    );
    await nf(b.ord.getOrder({ userId, orderId }), "order_id");
    await nf(b.ord.getOrderHistory({ userId, orderId }), "order_id");
    await nf(b.ord.cancelOrder({ userId, orderId, reason: "mine now", idempotencyKey: key() }), "order_id");
    await nf(b.ord.archiveOrder({ userId, orderId, idempotencyKey: key() }), "order_id");
    await nf(drain(b.ord.watchOrder({ userId, orderId, afterVersion: 0n })), "order_id");
    // Her order is untouched.
    expect((await a.ord.getOrder({ orderId })).order?.status).toBe(OrderStatus.PENDING);
  });

  it("another user cannot watch, list or act as her: NOT_FOUND for her stream, PERMISSION_DENIED otherwise", async () => {
    await expectError(drain(b.ord.watchOrders({ userId: alice })), Code.NotFound, "user_id");
    const pd = (call: Promise<unknown>, field: string) => expectError(call, Code.PermissionDenied, field);
    await pd(b.res.listReservations({ userId: alice }), "user_id");
    await pd(b.ord.listOrders({ userId: alice }), "user_id");
    await pd(
      b.res.createReservation({ userId: alice, items: [{ productId, quantity: 1n }], idempotencyKey: key() }),
      "user_id",
    );
    await pd(
      b.ord.createOrder({
        userId: alice,
        source: { case: "items", value: { items: [{ productId, quantity: 1n }] } },
        customerEmail: "x@example.com",
        idempotencyKey: key(),
      }),
      "user_id",
    );
  });

  it("a plain user gets PERMISSION_DENIED on operator and service RPCs", async () => {
    const pd = (call: Promise<unknown>) => expectError(call, Code.PermissionDenied);
    await pd(a.inv.checkStockInvariant({}));
    await pd(a.ord.listTopCustomers({ currencyCode: "EUR" }));
    await pd(a.ord.listOrders({})); // every user's orders, across shards
    await pd(
      a.ord.updateOrderStatus({
        orderId,
        status: OrderStatus.CONFIRMED,
        expectedVersion: 1n,
        reason: "self-service",
        idempotencyKey: key(),
      }),
    );
    await pd(
      a.ord.recordPayment({
        orderId,
        amount: EUR(1299),
        providerReference: "psp-fake",
        status: PaymentStatus.CAPTURED,
        idempotencyKey: key(),
      }),
    );
    await pd(
      a.ord.refundOrderItems({
        orderId,
        items: [{ productId, quantity: 1n }],
        reason: "r",
        idempotencyKey: key(),
      }),
    );
  });

  it("a service principal acts for the users it names, but is no operator", async () => {
    const checkout = as(transportName, "checkout", ["service"]);
    const carol = unique("carol");
    const o = await checkout.ord.createOrder({
      userId: carol,
      source: { case: "items", value: { items: [{ productId, quantity: 1n }] } },
      customerEmail: "carol@example.com",
      idempotencyKey: key(),
    });
    expect(o.order?.userId).toBe(carol);
    const payments = as(transportName, "payments", ["service"]);
    await payments.ord.updateOrderStatus({
      orderId: o.order?.id ?? "",
      status: OrderStatus.CONFIRMED,
      expectedVersion: 1n,
      reason: "paid",
      idempotencyKey: key(),
    });
    // The history records who did it: the service's subject, not a constant.
    const history = await as(transportName, carol).ord.getOrderHistory({ orderId: o.order?.id ?? "" });
    expect(history.events.map((e) => e.actor)).toEqual([carol, "payments"]);
    await expectError(checkout.inv.checkStockInvariant({}), Code.PermissionDenied);
    await expectError(checkout.ord.listOrders({}), Code.PermissionDenied, "user_id");
    await expectError(checkout.ord.listTopCustomers({ currencyCode: "EUR" }), Code.PermissionDenied);
    // A service must still name the user: there is no "own" user for it to default to.
    await expectError(
      checkout.res.createReservation({ items: [{ productId, quantity: 1n }], idempotencyKey: key() }),
      Code.InvalidArgument,
      "user_id",
    );
  });

  it("sellers manage only their own products; an operator may manage anyone's", async () => {
    const sellerA = unique("sellerA");
    const sellerB = unique("sellerB");
    const sa = as(transportName, sellerA);
    const sb = as(transportName, sellerB);
    const created = await sa.inv.createProduct({
      sku: unique("sku"),
      name: "Own mug",
      price: EUR(500),
      initialStock: [{ warehouseId: "main", quantity: 3n }],
      idempotencyKey: key(),
    });
    const product = created.product;
    expect(product?.sellerId).toBe(sellerA);
    const id = product?.id ?? "";
    const adjust = { productId: id, warehouseId: "main", delta: 5n, reason: "restock" };
    expect((await sa.inv.adjustStock({ ...adjust, idempotencyKey: key() })).stock?.available).toBe(8n);

    const pd = (call: Promise<unknown>, field: string) => expectError(call, Code.PermissionDenied, field);
    await pd(sb.inv.adjustStock({ ...adjust, idempotencyKey: key() }), "product_id");
    await pd(
      sb.inv.updateProduct({
        productId: id,
        expectedVersion: 1n,
        name: "Mine",
        price: EUR(1),
        idempotencyKey: key(),
      }),
      "product_id",
    );
    await pd(sb.inv.listStockMovements({ productId: id }), "product_id");
    await pd(
      sb.inv.createProduct({
        sellerId: sellerA,
        sku: unique("sku"),
        name: "Fake",
        price: EUR(1),
        idempotencyKey: key(),
      }),
      "seller_id",
    );
    // A service is not a seller's stand-in for stock: adjustments of others' products need an operator.
    await pd(
      as(transportName, "warehouse", ["service"]).inv.adjustStock({ ...adjust, idempotencyKey: key() }),
      "product_id",
    );
    const operator = as(transportName, "ops-1", ["operator"]);
    expect((await operator.inv.adjustStock({ ...adjust, idempotencyKey: key() })).stock?.available).toBe(13n);
    // Reads of the catalogue are open to every authenticated caller.
    expect((await sb.inv.getProduct({ productId: id })).product?.stock[0]?.available).toBe(13n);
    expect((await sb.inv.getAvailability({ productIds: [id] })).availability[0]?.totalAvailable).toBe(13n);
    // A product that does not exist is still NOT_FOUND for a plain seller.
    await expectError(
      sb.inv.adjustStock({
        ...adjust,
        productId: productId.replace(/.$/, (c) => (c === "A" ? "B" : "A")),
        idempotencyKey: key(),
      }),
      Code.NotFound,
    );
  });
});

/** Reads a stream to its end (or its first error). */
async function drain(stream: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of stream) {
    // a watch of someone else's order must fail before its first message
  }
}
