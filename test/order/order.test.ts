import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import { OrderService, OrderStatus, PaymentStatus } from "../../gen/shop/order/v1/order_pb.js";
import { ReservationService, ReservationStatus } from "../../gen/shop/reservation/v1/reservation_pb.js";
import type { App } from "../../src/app.js";
import { ORDER_STATUSES, TRANSITIONS } from "../../src/order/order.model.js";
import { checkOrders } from "../../src/order/order-check.js";
import { startTestApp, unique } from "../harness/app.js";
import { client, MAIN_TRANSPORTS, transportFor } from "../harness/clients.js";
import { expectError } from "../harness/errors.js";
import { seedProduct } from "../inventory/seed.js";
import { userOnShard } from "../reservation/seed.js";

let app: App & { port: number };
beforeAll(async () => {
  app = await startTestApp();
});
afterAll(async () => {
  await app?.shutdown();
});

const S = OrderStatus;
const PROTO: Record<string, OrderStatus> = {
  pending: S.PENDING,
  confirmed: S.CONFIRMED,
  processing: S.PROCESSING,
  shipped: S.SHIPPED,
  delivered: S.DELIVERED,
  cancelled: S.CANCELLED,
};
/** The path from PENDING to each status through the table (CANCELLED straight from PENDING). */
const PATH: Record<string, OrderStatus[]> = {
  pending: [],
  confirmed: [S.CONFIRMED],
  processing: [S.CONFIRMED, S.PROCESSING],
  shipped: [S.CONFIRMED, S.PROCESSING, S.SHIPPED],
  delivered: [S.CONFIRMED, S.PROCESSING, S.SHIPPED, S.DELIVERED],
  cancelled: [S.CANCELLED],
};

async function orderViolations() {
  return (await Promise.all(app.shards.shards.map((s) => checkOrders(s.fork())))).flat();
}

describe.each(MAIN_TRANSPORTS)("OrderService over %s", (name) => {
  const inv = () => client(InventoryService, transportFor(name, app.port));
  const res = () => client(ReservationService, transportFor(name, app.port));
  const ord = () => client(OrderService, transportFor(name, app.port));
  const stock = async (productId: string) => (await inv().getProduct({ productId })).product?.stock[0];

  async function orderFromItems(buyer: string, items: { productId: string; quantity: bigint }[]) {
    const { order } = await ord().createOrder({
      userId: buyer,
      source: { case: "items", value: { items } },
      customerEmail: "buyer@example.com",
      idempotencyKey: unique("k"),
    });
    if (!order) throw new Error("no order");
    return order;
  }

  /** Moves a fresh (version 1) order along `to`. */
  async function move(orderId: string, to: OrderStatus[], from = 1n) {
    let version = from;
    for (const status of to) {
      const { order } = await ord().updateOrderStatus({
        orderId,
        status,
        expectedVersion: version,
        reason: "test",
        idempotencyKey: unique("k"),
      });
      version = order?.version ?? 0n;
    }
    return version;
  }

  it("confirms an active reservation into an order: holds become sold, prices and totals from the server", async () => {
    const buyer = userOnShard(app, 0, "buyer");
    const seller = userOnShard(app, 1, "seller");
    const p = await seedProduct(inv(), seller, { price: 250, stock: { main: 5 } });
    const q = await seedProduct(inv(), seller, { price: 1000, stock: { main: 5 } });
    const { reservation } = await res().createReservation({
      userId: buyer,
      items: [
        { productId: p.id, quantity: 3n },
        { productId: q.id, quantity: 1n },
      ],
      idempotencyKey: unique("k"),
    });
    const { order } = await ord().createOrder({
      userId: buyer,
      source: { case: "reservationId", value: reservation?.id ?? "" },
      customerEmail: "ann@example.com",
      idempotencyKey: unique("k"),
    });
    expect(order?.status).toBe(S.PENDING);
    expect(order?.sellerId).toBe(seller);
    expect(order?.childOrderIds).toEqual([]);
    expect(order?.orderNumber).toMatch(/^SO-\d{8}-[0-9A-Z]{8}$/);
    expect(order?.total).toEqual(expect.objectContaining({ amountMinor: 1750n, currencyCode: "EUR" }));
    expect(
      order?.items.map((i) => [i.productId, i.quantity, i.unitPrice?.amountMinor, i.lineTotal?.amountMinor]),
    ).toEqual(
      [
        [p.id, 3n, 250n, 750n],
        [q.id, 1n, 1000n, 1000n],
      ].sort((a, b) => (String(a[0]) < String(b[0]) ? -1 : 1)),
    );
    expect(order?.version).toBe(1n);
    expect(
      (await res().getReservation({ userId: buyer, reservationId: reservation?.id ?? "" })).reservation
        ?.status,
    ).toBe(ReservationStatus.CONFIRMED);
    expect(await stock(p.id)).toMatchObject({ available: 2n, held: 0n, sold: 3n });
    expect(await stock(q.id)).toMatchObject({ available: 4n, held: 0n, sold: 1n });
    // A second order from the same reservation is refused.
    await expectError(
      ord().createOrder({
        userId: buyer,
        source: { case: "reservationId", value: reservation?.id ?? "" },
        customerEmail: "ann@example.com",
        idempotencyKey: unique("k"),
      }),
      Code.FailedPrecondition,
      "reservation_id",
    );
    const history = await ord().getOrderHistory({ userId: buyer, orderId: order?.id ?? "" });
    expect(history.events.map((e) => [e.version, e.kind, e.fromStatus, e.toStatus, e.actor])).toEqual([
      [1n, "created", S.UNSPECIFIED, S.PENDING, buyer],
    ]);
    expect((await inv().checkStockInvariant({})).violations).toEqual([]);
  });

  it("refuses a released or expired reservation with FAILED_PRECONDITION and writes nothing", async () => {
    const buyer = unique("buyer");
    const p = await seedProduct(inv(), unique("seller"), { stock: { main: 5 } });
    const { reservation } = await res().createReservation({
      userId: buyer,
      items: [{ productId: p.id, quantity: 1n }],
      idempotencyKey: unique("k"),
    });
    const id = reservation?.id ?? "";
    await res().releaseReservation({ userId: buyer, reservationId: id, idempotencyKey: unique("k") });
    await expectError(
      ord().createOrder({
        userId: buyer,
        source: { case: "reservationId", value: id },
        customerEmail: "a@example.com",
        idempotencyKey: unique("k"),
      }),
      Code.FailedPrecondition,
      "reservation_id",
    );
    const short = await res().createReservation({
      userId: buyer,
      items: [{ productId: p.id, quantity: 1n }],
      ttl: { seconds: 1n },
      idempotencyKey: unique("k"),
    });
    await new Promise((r) => setTimeout(r, 1200));
    await expectError(
      ord().createOrder({
        userId: buyer,
        source: { case: "reservationId", value: short.reservation?.id ?? "" },
        customerEmail: "a@example.com",
        idempotencyKey: unique("k"),
      }),
      Code.FailedPrecondition,
      "reservation_id",
    );
    expect((await ord().listOrders({ userId: buyer, includeArchived: true })).orders).toEqual([]);
    // Another user's reservation is NOT_FOUND.
    await expectError(
      ord().createOrder({
        userId: unique("intruder"),
        source: { case: "reservationId", value: short.reservation?.id ?? "" },
        customerEmail: "a@example.com",
        idempotencyKey: unique("k"),
      }),
      Code.NotFound,
      "reservation_id",
    );
  });

  it("orders straight from items across shards; not enough stock is FAILED_PRECONDITION with nothing held", async () => {
    const buyer = userOnShard(app, 2, "buyer");
    const sellers = [0, 1].map((s) => userOnShard(app, s, "seller"));
    const [a, b] = await Promise.all(
      sellers.map((s) => seedProduct(inv(), s, { price: 100, stock: { main: 2 } })),
    );
    if (!a || !b) throw new Error("seed");
    const order = await orderFromItems(buyer, [
      { productId: a.id, quantity: 1n },
      { productId: b.id, quantity: 2n },
    ]);
    expect(order.total?.amountMinor).toBe(300n);
    expect(await stock(b.id)).toMatchObject({ available: 0n, sold: 2n, held: 0n });
    await expectError(
      ord().createOrder({
        userId: buyer,
        source: { case: "items", value: { items: [{ productId: b.id, quantity: 1n }] } },
        customerEmail: "a@example.com",
        idempotencyKey: unique("k"),
      }),
      Code.FailedPrecondition,
    );
    expect(await stock(a.id)).toMatchObject({ available: 1n, held: 0n });
  });

  it("issue test 8: a multi-seller order has a child per seller; totals add up; cancelling one child returns only its stock", async () => {
    const buyer = userOnShard(app, 1, "buyer");
    const s1 = userOnShard(app, 0, "sellerA");
    const s2 = userOnShard(app, 2, "sellerB");
    const a1 = await seedProduct(inv(), s1, { price: 500, stock: { main: 10 } });
    const a2 = await seedProduct(inv(), s1, { price: 50, stock: { main: 10 } });
    const b1 = await seedProduct(inv(), s2, { price: 1999, stock: { main: 10 } });
    const parent = await orderFromItems(buyer, [
      { productId: a1.id, quantity: 2n },
      { productId: a2.id, quantity: 3n },
      { productId: b1.id, quantity: 1n },
    ]);
    expect(parent.sellerId).toBe("");
    expect(parent.childOrderIds).toHaveLength(2);
    expect(parent.total?.amountMinor).toBe(1000n + 150n + 1999n);
    expect(parent.items).toHaveLength(3);
    const got = await ord().getOrder({ userId: buyer, orderId: parent.id });
    const children = got.children;
    expect(children.map((c) => c.sellerId).sort()).toEqual([s1, s2].sort());
    for (const c of children) {
      expect(c.parentOrderId).toBe(parent.id);
      expect(c.total?.amountMinor).toBe(c.items.reduce((t, i) => t + (i.lineTotal?.amountMinor ?? 0n), 0n));
    }
    expect(children.reduce((t, c) => t + (c.total?.amountMinor ?? 0n), 0n)).toBe(parent.total?.amountMinor);
    // Children are not listed on their own.
    const listed = await ord().listOrders({ userId: buyer });
    expect(listed.orders.map((o) => o.id)).toEqual([parent.id]);

    const childA = children.find((c) => c.sellerId === s1);
    const childB = children.find((c) => c.sellerId === s2);
    if (!childA || !childB) throw new Error("children");
    await move(childB.id, [S.CONFIRMED]);
    const cancelled = await ord().cancelOrder({
      userId: buyer,
      orderId: childA.id,
      reason: "changed my mind",
      idempotencyKey: unique("k"),
    });
    expect(cancelled.order?.status).toBe(S.CANCELLED);
    expect(await stock(a1.id)).toMatchObject({ available: 10n, sold: 0n, held: 0n });
    expect(await stock(a2.id)).toMatchObject({ available: 10n, sold: 0n, held: 0n });
    expect(await stock(b1.id)).toMatchObject({ available: 9n, sold: 1n, held: 0n });
    // The parent follows its live child; cancelling the other child cancels the parent.
    const after = await ord().getOrder({ userId: buyer, orderId: parent.id });
    expect(after.order?.status).toBe(S.CONFIRMED);
    await ord().cancelOrder({ userId: buyer, orderId: childB.id, reason: "", idempotencyKey: unique("k") });
    const end = await ord().getOrder({ userId: buyer, orderId: parent.id });
    expect(end.order?.status).toBe(S.CANCELLED);
    expect(end.order?.total?.amountMinor).toBe(parent.total?.amountMinor); // nothing deleted or rewritten
    expect(await stock(b1.id)).toMatchObject({ available: 10n, sold: 0n });
    const history = await ord().getOrderHistory({ userId: buyer, orderId: parent.id });
    expect(history.events.map((e) => [e.version, e.toStatus, e.actor])).toEqual([
      [1n, S.PENDING, buyer],
      [2n, S.CONFIRMED, "system"],
      [3n, S.CANCELLED, "system"],
    ]);
    // A parent's status is not set directly.
    await expectError(
      ord().updateOrderStatus({
        orderId: parent.id,
        status: S.CONFIRMED,
        expectedVersion: 3n,
        reason: "",
        idempotencyKey: unique("k"),
      }),
      Code.FailedPrecondition,
      "order_id",
    );
    expect((await inv().checkStockInvariant({})).violations).toEqual([]);
    expect(await orderViolations()).toEqual([]);
  });

  it("issue test 5: cancel returns the stock and leaves the customer's other orders and data untouched", async () => {
    const buyer = userOnShard(app, 0, "buyer");
    const p = await seedProduct(inv(), userOnShard(app, 2, "seller"), { price: 700, stock: { main: 6 } });
    const keep1 = await orderFromItems(buyer, [{ productId: p.id, quantity: 1n }]);
    const target = await orderFromItems(buyer, [{ productId: p.id, quantity: 2n }]);
    const keep2 = await orderFromItems(buyer, [{ productId: p.id, quantity: 1n }]);
    await move(keep2.id, [S.CONFIRMED, S.PROCESSING]);
    const before = await ord().listOrders({ userId: buyer });
    expect(await stock(p.id)).toMatchObject({ available: 2n, sold: 4n });

    const { order } = await ord().cancelOrder({
      userId: buyer,
      orderId: target.id,
      expectedVersion: 1n,
      reason: "duplicate",
      idempotencyKey: unique("k"),
    });
    expect(order?.status).toBe(S.CANCELLED);
    expect(order?.customerEmail).toBe("buyer@example.com");
    expect(order?.items).toEqual(target.items);
    expect(await stock(p.id)).toMatchObject({ available: 4n, sold: 2n, held: 0n });
    const after = await ord().listOrders({ userId: buyer });
    expect(after.orders.map((o) => o.id)).toEqual(before.orders.map((o) => o.id));
    for (const o of after.orders.filter((x) => x.id !== target.id)) {
      expect(o).toEqual(before.orders.find((b) => b.id === o.id));
    }
    // Cancelling again, or cancelling an order past PROCESSING, is FAILED_PRECONDITION; stock unchanged.
    await expectError(
      ord().cancelOrder({ userId: buyer, orderId: target.id, reason: "", idempotencyKey: unique("k") }),
      Code.FailedPrecondition,
      "order_id",
    );
    await move(keep1.id, [S.CONFIRMED, S.PROCESSING, S.SHIPPED]);
    await expectError(
      ord().cancelOrder({ userId: buyer, orderId: keep1.id, reason: "", idempotencyKey: unique("k") }),
      Code.FailedPrecondition,
      "order_id",
    );
    // Another user cannot see or cancel it.
    await expectError(
      ord().cancelOrder({
        userId: unique("other"),
        orderId: keep2.id,
        reason: "",
        idempotencyKey: unique("k"),
      }),
      Code.NotFound,
      "order_id",
    );
    expect(await stock(p.id)).toMatchObject({ available: 4n, sold: 2n, held: 0n });
    expect((await inv().checkStockInvariant({})).violations).toEqual([]);
    expect(await orderViolations()).toEqual([]);
  });

  it("payments and refunds keep paid, refunded and the lines consistent", async () => {
    const buyer = unique("buyer");
    const p = await seedProduct(inv(), unique("seller"), { price: 400, stock: { main: 5 } });
    const q = await seedProduct(inv(), unique("seller"), { price: 100, stock: { main: 5 } });
    const o = await orderFromItems(buyer, [
      { productId: p.id, quantity: 2n },
      { productId: q.id, quantity: 1n },
    ]);
    const pay = (amount: bigint, ref: string, status: PaymentStatus, currencyCode = "EUR") =>
      ord().recordPayment({
        orderId: o.id,
        amount: { amountMinor: amount, currencyCode },
        providerReference: ref,
        status,
        idempotencyKey: unique("k"),
      });
    await expectError(
      pay(900n, "psp-1", PaymentStatus.CAPTURED, "USD"),
      Code.InvalidArgument,
      "amount.currency_code",
    );
    await pay(900n, "psp-1", PaymentStatus.AUTHORIZED);
    const captured = await pay(900n, "psp-1", PaymentStatus.CAPTURED);
    expect(captured.order?.paid?.amountMinor).toBe(900n);
    expect(captured.order?.payments.map((x) => [x.providerReference, x.status])).toEqual([
      ["psp-1", PaymentStatus.CAPTURED],
    ]);
    await expectError(pay(1n, "psp-2", PaymentStatus.CAPTURED), Code.FailedPrecondition, "amount");
    await expectError(pay(900n, "psp-1", PaymentStatus.FAILED), Code.FailedPrecondition, "status");

    const refund = (productId: string, quantity: bigint) =>
      ord().refundOrderItems({
        orderId: o.id,
        items: [{ productId, quantity }],
        reason: "damaged",
        idempotencyKey: unique("k"),
      });
    const r1 = await refund(p.id, 1n);
    expect(r1.refundAmount?.amountMinor).toBe(400n);
    expect(r1.order?.refunded?.amountMinor).toBe(400n);
    expect(r1.order?.items.find((i) => i.productId === p.id)?.refundedQuantity).toBe(1n);
    await expectError(refund(p.id, 2n), Code.FailedPrecondition, "items[0].quantity");
    await expectError(
      refund(q.id, 1n).then(() => refund(q.id, 1n)),
      Code.FailedPrecondition,
      "items[0].quantity",
    );
    const history = await ord().getOrderHistory({ userId: buyer, orderId: o.id });
    expect(history.events.map((e) => e.kind)).toEqual(["created", "payment", "payment", "refund", "refund"]);
    expect(history.events.map((e) => e.version)).toEqual([1n, 2n, 3n, 4n, 5n]);
    expect(await orderViolations()).toEqual([]);
  });

  it("archives only finished orders, and hides them from default lists", async () => {
    const buyer = unique("buyer");
    const p = await seedProduct(inv(), unique("seller"), { stock: { main: 5 } });
    const o = await orderFromItems(buyer, [{ productId: p.id, quantity: 1n }]);
    await expectError(
      ord().archiveOrder({ userId: buyer, orderId: o.id, idempotencyKey: unique("k") }),
      Code.FailedPrecondition,
      "order_id",
    );
    await move(o.id, PATH.delivered as OrderStatus[]);
    const { order } = await ord().archiveOrder({ userId: buyer, orderId: o.id, idempotencyKey: unique("k") });
    expect(order?.archived).toBe(true);
    expect((await ord().listOrders({ userId: buyer })).orders).toEqual([]);
    expect(
      (await ord().listOrders({ userId: buyer, includeArchived: true })).orders.map((x) => x.id),
    ).toEqual([o.id]);
  });
});

describe("the status machine", () => {
  const inv = () => client(InventoryService, transportFor("grpc-h2c", app.port));
  const ord = () => client(OrderService, transportFor("grpc-h2c", app.port));

  async function orderAt(status: string) {
    const buyer = unique("buyer");
    const p = await seedProduct(inv(), unique("seller"), { stock: { main: 1 } });
    const { order } = await ord().createOrder({
      userId: buyer,
      source: { case: "items", value: { items: [{ productId: p.id, quantity: 1n }] } },
      customerEmail: "a@example.com",
      idempotencyKey: unique("k"),
    });
    let version = order?.version ?? 0n;
    for (const s of PATH[status] ?? []) {
      const moved = await ord().updateOrderStatus({
        orderId: order?.id ?? "",
        status: s,
        expectedVersion: version,
        reason: "",
        idempotencyKey: unique("k"),
      });
      version = moved.order?.version ?? 0n;
    }
    return { id: order?.id ?? "", version, buyer };
  }

  const illegal = ORDER_STATUSES.flatMap((from) =>
    ORDER_STATUSES.filter((to) => !TRANSITIONS[from].includes(to)).map((to) => [from, to] as const),
  );
  it("has the documented table", () => {
    expect(TRANSITIONS).toEqual({
      pending: ["confirmed", "cancelled"],
      confirmed: ["processing", "cancelled"],
      processing: ["shipped", "cancelled"],
      shipped: ["delivered"],
      delivered: [],
      cancelled: [],
    });
    expect(illegal).toHaveLength(36 - 7);
  });

  it.each(illegal)("issue test 4: %s -> %s is FAILED_PRECONDITION and changes nothing", async (from, to) => {
    const o = await orderAt(from);
    await expectError(
      ord().updateOrderStatus({
        orderId: o.id,
        status: PROTO[to] as OrderStatus,
        expectedVersion: o.version,
        reason: "",
        idempotencyKey: unique("k"),
      }),
      Code.FailedPrecondition,
      "status",
    );
    const { order } = await ord().getOrder({ userId: o.buyer, orderId: o.id });
    expect(order?.version).toBe(o.version);
    expect(order?.status).toBe(PROTO[from]);
  });

  it("issue test 3: 20 concurrent updates with one expected version: exactly one wins, the rest ABORTED", async () => {
    const o = await orderAt("pending");
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) =>
        ord().updateOrderStatus({
          orderId: o.id,
          status: S.CONFIRMED,
          expectedVersion: o.version,
          reason: `racer ${i}`,
          idempotencyKey: unique("k"),
        }),
      ),
    );
    const won = results.filter((r) => r.status === "fulfilled");
    const lost = results.filter((r) => r.status === "rejected");
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(19);
    for (const r of lost) expect(Code[(r.reason as { code: Code }).code]).toBe("Aborted");
    const { order } = await ord().getOrder({ userId: o.buyer, orderId: o.id });
    expect(order?.version).toBe(o.version + 1n);
    const history = await ord().getOrderHistory({ userId: o.buyer, orderId: o.id });
    expect(history.events.map((e) => e.version)).toEqual([1n, 2n]);
    // The next move needs the new version; the stale one is still ABORTED.
    await expectError(
      ord().updateOrderStatus({
        orderId: o.id,
        status: S.PROCESSING,
        expectedVersion: o.version,
        reason: "",
        idempotencyKey: unique("k"),
      }),
      Code.Aborted,
      "expected_version",
    );
  });
});
