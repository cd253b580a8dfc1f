import { type DescMessage, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import {
  ArchiveOrderResponseSchema,
  CancelOrderResponseSchema,
  CreateOrderResponseSchema,
  type Order,
  OrderService,
  OrderStatus,
  PaymentStatus,
  RecordPaymentResponseSchema,
  RefundOrderItemsResponseSchema,
  UpdateOrderStatusResponseSchema,
} from "../../gen/shop/order/v1/order_pb.js";
import { ReservationService, ReservationStatus } from "../../gen/shop/reservation/v1/reservation_pb.js";
import type { App } from "../../src/app.js";
import { checkOrders } from "../../src/order/order-check.js";
import { startTestApp, unique } from "../harness/app.js";
import { client, MAIN_TRANSPORTS, transportFor } from "../harness/clients.js";
import { expectError } from "../harness/errors.js";
import { seedProduct } from "../inventory/seed.js";
import { userOnShard } from "../reservation/seed.js";

/*
 * Issue requirement "Idempotent CreateOrder under replay", for every mutating OrderService RPC: the
 * same request sent three times with one idempotency key (one after the other, and all at once)
 * gets byte-identical answers and has exactly one effect; the key reused with another request is
 * INVALID_ARGUMENT naming idempotency_key and changes nothing.
 */

let app: App & { port: number };
beforeAll(async () => {
  app = await startTestApp();
});
afterAll(async () => {
  await app?.shutdown();
});

/** The answers serialized to the wire format: a replay must answer byte for byte what the first call did. */
function wire<Desc extends DescMessage>(schema: Desc, answers: MessageShape<Desc>[]): string[] {
  return answers.map((a) => Buffer.from(toBinary(schema, a)).toString("base64"));
}

const MODES = ["sequential", "concurrent"] as const;
type Mode = (typeof MODES)[number];

/** Sends the same call three times: one after the other, or all at once. */
async function thrice<T>(mode: Mode, call: () => Promise<T>): Promise<T[]> {
  if (mode === "concurrent") return Promise.all([call(), call(), call()]);
  const out: T[] = [];
  for (let i = 0; i < 3; i++) out.push(await call());
  return out;
}

/** A call's answer or its error code, for races where a loser may be told to retry. */
type Outcome<T> =
  | { ok: T; code?: undefined; message?: undefined }
  | { ok?: undefined; code: Code; message: string };
const settle = <T>(p: Promise<T>): Promise<Outcome<T>> =>
  p.then(
    (ok) => ({ ok }),
    (e: unknown) => {
      const err = ConnectError.from(e);
      return { code: err.code, message: err.rawMessage };
    },
  );

const S = OrderStatus;

describe.each(MAIN_TRANSPORTS)("OrderService replays over %s", (name) => {
  const inv = () => client(InventoryService, transportFor(name, app.port));
  const res = () => client(ReservationService, transportFor(name, app.port));
  const ord = () => client(OrderService, transportFor(name, app.port));
  const stock = async (productId: string) => (await inv().getProduct({ productId })).product?.stock[0];
  const product = (shard: number, opts: { stock?: number; price?: number; seller?: string } = {}) =>
    seedProduct(inv(), opts.seller ?? userOnShard(app, shard, "seller"), {
      price: opts.price ?? 100,
      stock: { main: opts.stock ?? 10 },
    });
  /** Ledger rows of one kind a reservation wrote for a product (on the product's shard). */
  const ledger = async (productId: string, kind: string, reservationId: string) => {
    const [row] = await app.shards
      .forId(productId, "prd", "product_id")
      .fork()
      .execute<{ n: string }[]>(
        "select count(*) as n from stock_movements where product_id = ? and kind = ? and reference = ?",
        [productId, kind, reservationId],
      );
    return Number(row?.n);
  };
  /** Every order row of a buyer (parents and children) and every reservation, on the buyer's shard. */
  const rowsOf = async (userId: string) => {
    const em = app.shards.forUser(userId).fork();
    const count = async (sql: string) => Number((await em.execute<{ n: string }[]>(sql, [userId]))[0]?.n);
    return {
      orders: await count("select count(*) as n from orders where user_id = ?"),
      reservations: await count("select count(*) as n from reservations where user_id = ?"),
    };
  };
  const history = async (userId: string, orderId: string) =>
    (await ord().getOrderHistory({ userId, orderId })).events.map((e) => [e.version, e.kind, e.toStatus]);
  const getOrder = async (userId: string, orderId: string) =>
    (await ord().getOrder({ userId, orderId })).order as Order;

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

  describe.each(MODES)("three %s sends with one key", (mode) => {
    it("CreateOrder from a reservation: one order, the holds sold once, one answer", async () => {
      const buyer = userOnShard(app, 0, "buyer");
      const seller = userOnShard(app, 1, "seller");
      const ps = await Promise.all([product(1, { seller }), product(1, { seller })]);
      const { reservation } = await res().createReservation({
        userId: buyer,
        items: ps.map((p) => ({ productId: p.id, quantity: 2n })),
        idempotencyKey: unique("k"),
      });
      const rid = reservation?.id ?? "";
      const req = {
        userId: buyer,
        source: { case: "reservationId" as const, value: rid },
        customerEmail: "ann@example.com",
        idempotencyKey: unique("k"),
      };
      const answers = await thrice(mode, () => ord().createOrder(req));
      const first = wire(CreateOrderResponseSchema, answers)[0];
      expect(wire(CreateOrderResponseSchema, answers)).toEqual([first, first, first]);
      const order = answers[0]?.order as Order;
      expect(order.status).toBe(S.PENDING);
      expect(order.reservationId).toBe(rid);
      // A later replay still gets the same bytes and moves nothing.
      expect(wire(CreateOrderResponseSchema, [await ord().createOrder(req)])).toEqual([first]);

      expect(await rowsOf(buyer)).toEqual({ orders: 1, reservations: 1 });
      expect(
        (await ord().listOrders({ userId: buyer, includeArchived: true })).orders.map((o) => o.id),
      ).toEqual([order.id]);
      for (const p of ps) {
        expect(await stock(p.id)).toMatchObject({ available: 8n, held: 0n, sold: 2n });
        expect(await ledger(p.id, "sold", rid)).toBe(1);
      }
      expect(await history(buyer, order.id)).toEqual([[1n, "created", S.PENDING]]);
      expect((await res().getReservation({ userId: buyer, reservationId: rid })).reservation?.status).toBe(
        ReservationStatus.CONFIRMED,
      );
    });

    it.each([
      ["on the buyer's shard (one seller)", [0, 0], true, 1],
      ["across shards (a parent and a child per seller)", [0, 1], false, 3],
    ] as const)(
      "CreateOrder from items %s: one order, stock sold once, one answer",
      async (_what, shards, oneSeller, rows) => {
        const buyer = userOnShard(app, shards[0], "buyer");
        const seller = oneSeller ? userOnShard(app, shards[0], "seller") : undefined;
        const ps = await Promise.all(shards.map((s) => product(s, { price: 250, seller })));
        const req = {
          userId: buyer,
          source: {
            case: "items" as const,
            value: { items: ps.map((p) => ({ productId: p.id, quantity: 3n })) },
          },
          customerEmail: "bob@example.com",
          idempotencyKey: unique("k"),
        };
        const outcomes = await thrice(mode, () => settle(ord().createOrder(req)));
        const won = outcomes.flatMap((o) => (o.ok ? [o.ok] : []));
        // A replay that arrives while the first attempt still runs may be told to retry (ABORTED,
        // naming idempotency_key); one after the other, every send is answered.
        const lost = outcomes.filter((o) => !o.ok);
        if (mode === "sequential") expect(lost).toEqual([]);
        for (const o of lost) {
          expect(Code[o.code ?? Code.Unknown], o.message).toBe("Aborted");
          expect(o.message).toContain("idempotency_key");
        }
        expect(won.length).toBeGreaterThanOrEqual(1);
        const first = wire(CreateOrderResponseSchema, won)[0];
        expect(wire(CreateOrderResponseSchema, won)).toEqual(won.map(() => first));
        expect(wire(CreateOrderResponseSchema, [await ord().createOrder(req)])).toEqual([first]);

        const order = won[0]?.order as Order;
        expect(order.total?.amountMinor).toBe(250n * 3n * BigInt(ps.length));
        expect(order.childOrderIds).toHaveLength(rows === 1 ? 0 : 2);
        // One order (with its children), made from one reservation (the one the order took).
        expect(await rowsOf(buyer)).toEqual({ orders: rows, reservations: 1 });
        expect(
          (await ord().listOrders({ userId: buyer, includeArchived: true })).orders.map((o) => o.id),
        ).toEqual([order.id]);
        for (const p of ps) {
          expect(await stock(p.id)).toMatchObject({ available: 7n, held: 0n, sold: 3n });
          expect(await ledger(p.id, "held", order.reservationId)).toBe(1);
          expect(await ledger(p.id, "sold", order.reservationId)).toBe(1);
        }
        expect(await history(buyer, order.id)).toEqual([[1n, "created", S.PENDING]]);
      },
    );

    it("UpdateOrderStatus: the version bumped once, one history row, one answer", async () => {
      const buyer = unique("buyer");
      const p = await product(2);
      const o = await orderFromItems(buyer, [{ productId: p.id, quantity: 1n }]);
      const req = {
        orderId: o.id,
        status: S.CONFIRMED,
        expectedVersion: 1n,
        reason: "paid",
        idempotencyKey: unique("k"),
      };
      const answers = await thrice(mode, () => ord().updateOrderStatus(req));
      const first = wire(UpdateOrderStatusResponseSchema, answers)[0];
      expect(wire(UpdateOrderStatusResponseSchema, answers)).toEqual([first, first, first]);
      expect(answers[0]?.order?.status).toBe(S.CONFIRMED);
      expect(answers[0]?.order?.version).toBe(2n);
      expect(wire(UpdateOrderStatusResponseSchema, [await ord().updateOrderStatus(req)])).toEqual([first]);
      // Not even once the order moved on: the stored answer, not a stale-version refusal.
      await ord().updateOrderStatus({
        ...req,
        status: S.PROCESSING,
        expectedVersion: 2n,
        idempotencyKey: unique("k"),
      });
      expect(wire(UpdateOrderStatusResponseSchema, [await ord().updateOrderStatus(req)])).toEqual([first]);
      expect((await getOrder(buyer, o.id)).version).toBe(3n);
      expect(await history(buyer, o.id)).toEqual([
        [1n, "created", S.PENDING],
        [2n, "status", S.CONFIRMED],
        [3n, "status", S.PROCESSING],
      ]);
    });

    it("CancelOrder of a multi-seller order: every child cancelled once, the stock returned once", async () => {
      const buyer = userOnShard(app, 1, "buyer");
      const ps = await Promise.all([product(0, { stock: 5 }), product(2, { stock: 5 })]);
      const o = await orderFromItems(
        buyer,
        ps.map((p) => ({ productId: p.id, quantity: 2n })),
      );
      for (const p of ps) expect(await stock(p.id)).toMatchObject({ available: 3n, sold: 2n });
      const req = { userId: buyer, orderId: o.id, reason: "changed my mind", idempotencyKey: unique("k") };
      const answers = await thrice(mode, () => ord().cancelOrder(req));
      const first = wire(CancelOrderResponseSchema, answers)[0];
      expect(wire(CancelOrderResponseSchema, answers)).toEqual([first, first, first]);
      expect(answers[0]?.order?.status).toBe(S.CANCELLED);
      expect(wire(CancelOrderResponseSchema, [await ord().cancelOrder(req)])).toEqual([first]);

      for (const p of ps) {
        expect(await stock(p.id)).toMatchObject({ available: 5n, held: 0n, sold: 0n });
        expect(await ledger(p.id, "returned", o.reservationId)).toBe(1);
      }
      const got = await ord().getOrder({ userId: buyer, orderId: o.id });
      expect(got.order?.version).toBe(2n);
      expect(got.children.map((c) => [c.status, c.version])).toEqual([
        [S.CANCELLED, 2n],
        [S.CANCELLED, 2n],
      ]);
      expect(await history(buyer, o.id)).toEqual([
        [1n, "created", S.PENDING],
        [2n, "status", S.CANCELLED],
      ]);
      for (const c of got.children)
        expect(await history(buyer, c.id)).toEqual([
          [1n, "created", S.PENDING],
          [2n, "status", S.CANCELLED],
        ]);
    });

    it("ArchiveOrder: archived once, one history row, one answer", async () => {
      const buyer = unique("buyer");
      const p = await product(0);
      const o = await orderFromItems(buyer, [{ productId: p.id, quantity: 1n }]);
      await ord().cancelOrder({ userId: buyer, orderId: o.id, reason: "", idempotencyKey: unique("k") });
      const req = { userId: buyer, orderId: o.id, idempotencyKey: unique("k") };
      const answers = await thrice(mode, () => ord().archiveOrder(req));
      const first = wire(ArchiveOrderResponseSchema, answers)[0];
      expect(wire(ArchiveOrderResponseSchema, answers)).toEqual([first, first, first]);
      expect(answers[0]?.order?.archived).toBe(true);
      expect(answers[0]?.order?.version).toBe(3n);
      expect(wire(ArchiveOrderResponseSchema, [await ord().archiveOrder(req)])).toEqual([first]);
      expect((await getOrder(buyer, o.id)).version).toBe(3n);
      expect(await history(buyer, o.id)).toEqual([
        [1n, "created", S.PENDING],
        [2n, "status", S.CANCELLED],
        [3n, "archived", S.CANCELLED],
      ]);
    });

    it("RecordPayment: one payment, paid counted once, one answer", async () => {
      const buyer = unique("buyer");
      const p = await product(1, { price: 450 });
      const o = await orderFromItems(buyer, [{ productId: p.id, quantity: 2n }]);
      const req = {
        orderId: o.id,
        amount: { amountMinor: 900n, currencyCode: "EUR" },
        providerReference: unique("psp"),
        status: PaymentStatus.CAPTURED,
        idempotencyKey: unique("k"),
      };
      const answers = await thrice(mode, () => ord().recordPayment(req));
      const first = wire(RecordPaymentResponseSchema, answers)[0];
      expect(wire(RecordPaymentResponseSchema, answers)).toEqual([first, first, first]);
      expect(answers[0]?.order?.paid?.amountMinor).toBe(900n);
      expect(wire(RecordPaymentResponseSchema, [await ord().recordPayment(req)])).toEqual([first]);
      const after = await getOrder(buyer, o.id);
      expect(after.paid?.amountMinor).toBe(900n);
      expect(after.payments.map((x) => [x.providerReference, x.status])).toEqual([
        [req.providerReference, PaymentStatus.CAPTURED],
      ]);
      expect(after.version).toBe(2n);
      expect(await history(buyer, o.id)).toEqual([
        [1n, "created", S.PENDING],
        [2n, "payment", S.PENDING],
      ]);
    });

    it("RefundOrderItems: refunded counted once, one history row, one answer", async () => {
      const buyer = unique("buyer");
      const p = await product(2, { price: 300 });
      const o = await orderFromItems(buyer, [{ productId: p.id, quantity: 3n }]);
      await ord().recordPayment({
        orderId: o.id,
        amount: { amountMinor: 900n, currencyCode: "EUR" },
        providerReference: unique("psp"),
        status: PaymentStatus.CAPTURED,
        idempotencyKey: unique("k"),
      });
      const req = {
        orderId: o.id,
        items: [{ productId: p.id, quantity: 2n }],
        reason: "damaged",
        idempotencyKey: unique("k"),
      };
      const answers = await thrice(mode, () => ord().refundOrderItems(req));
      const first = wire(RefundOrderItemsResponseSchema, answers)[0];
      expect(wire(RefundOrderItemsResponseSchema, answers)).toEqual([first, first, first]);
      expect(answers[0]?.refundAmount?.amountMinor).toBe(600n);
      expect(wire(RefundOrderItemsResponseSchema, [await ord().refundOrderItems(req)])).toEqual([first]);
      const after = await getOrder(buyer, o.id);
      expect(after.refunded?.amountMinor).toBe(600n);
      expect(after.items[0]?.refundedQuantity).toBe(2n);
      expect(after.version).toBe(3n);
      expect((await history(buyer, o.id)).map((e) => e[1])).toEqual(["created", "payment", "refund"]);
    });
  });

  it("CreateOrder: the same key with another request is INVALID_ARGUMENT naming idempotency_key, and does nothing", async () => {
    const buyer = userOnShard(app, 0, "buyer");
    const seller = userOnShard(app, 2, "seller");
    const [p, q] = await Promise.all([product(2, { seller }), product(2, { seller })]);
    if (!p || !q) throw new Error("seed");
    const reserve = async () =>
      (
        await res().createReservation({
          userId: buyer,
          items: [{ productId: p.id, quantity: 1n }],
          idempotencyKey: unique("k"),
        })
      ).reservation?.id ?? "";
    const [r1, r2] = [await reserve(), await reserve()];
    const fromReservation = (reservationId: string, customerEmail = "a@example.com") => ({
      userId: buyer,
      source: { case: "reservationId" as const, value: reservationId },
      customerEmail,
    });
    const fromItems = (
      items: { productId: string; quantity: bigint; warehouseId?: string }[],
      customerEmail = "a@example.com",
    ) => ({
      userId: buyer,
      source: { case: "items" as const, value: { items } },
      customerEmail,
    });

    // A key that made an order from a reservation.
    const k1 = unique("k");
    const made = (await ord().createOrder({ ...fromReservation(r1), idempotencyKey: k1 })).order as Order;
    for (const other of [fromReservation(r1, "b@example.com"), fromReservation(r2)])
      await expectError(
        ord().createOrder({ ...other, idempotencyKey: k1 }),
        Code.InvalidArgument,
        "idempotency_key",
      );
    // A key that made an order from items.
    const k2 = unique("k");
    await ord().createOrder({ ...fromItems([{ productId: q.id, quantity: 1n }]), idempotencyKey: k2 });
    for (const other of [
      fromItems([{ productId: q.id, quantity: 2n }]),
      fromItems([
        { productId: q.id, quantity: 1n },
        { productId: p.id, quantity: 1n },
      ]),
      fromItems([{ productId: q.id, quantity: 1n, warehouseId: "main" }]),
      fromItems([{ productId: q.id, quantity: 1n }], "b@example.com"),
      fromReservation(r2),
    ])
      await expectError(
        ord().createOrder({ ...other, idempotencyKey: k2 }),
        Code.InvalidArgument,
        "idempotency_key",
      );
    // An order's key reused for a cancel of that very order (same buyer's key space).
    await expectError(
      ord().cancelOrder({ userId: buyer, orderId: made.id, reason: "", idempotencyKey: k1 }),
      Code.InvalidArgument,
      "idempotency_key",
    );

    // Nothing happened: two orders, r2 still ACTIVE and its unit still held.
    expect(await rowsOf(buyer)).toEqual({ orders: 2, reservations: 3 });
    expect((await res().getReservation({ userId: buyer, reservationId: r2 })).reservation?.status).toBe(
      ReservationStatus.ACTIVE,
    );
    expect((await getOrder(buyer, made.id)).status).toBe(S.PENDING);
    expect(await stock(p.id)).toMatchObject({ available: 8n, held: 1n, sold: 1n });
    expect(await stock(q.id)).toMatchObject({ available: 9n, held: 0n, sold: 1n });
  });

  // CreateOrder from items reserves under a derived key (`order <key>`) before it claims the order's
  // key; it must check the order's key first, or a mismatch would leave stock held until the TTL.
  it("a key that made an order from a reservation, reused with items, reserves nothing", async () => {
    const buyer = userOnShard(app, 1, "buyer");
    const p = await product(1);
    const { reservation } = await res().createReservation({
      userId: buyer,
      items: [{ productId: p.id, quantity: 1n }],
      idempotencyKey: unique("k"),
    });
    const key = unique("k");
    await ord().createOrder({
      userId: buyer,
      source: { case: "reservationId", value: reservation?.id ?? "" },
      customerEmail: "a@example.com",
      idempotencyKey: key,
    });
    await expectError(
      ord().createOrder({
        userId: buyer,
        source: { case: "items", value: { items: [{ productId: p.id, quantity: 4n }] } },
        customerEmail: "a@example.com",
        idempotencyKey: key,
      }),
      Code.InvalidArgument,
      "idempotency_key",
    );
    expect(await rowsOf(buyer)).toEqual({ orders: 1, reservations: 1 });
    expect(await stock(p.id)).toMatchObject({ available: 9n, held: 0n, sold: 1n });
  });

  it("changes of an order: the same key with another request is INVALID_ARGUMENT naming idempotency_key, and does nothing", async () => {
    const buyer = unique("buyer");
    const p = await product(1, { price: 100 });
    const [o, c1, c2] = [
      await orderFromItems(buyer, [{ productId: p.id, quantity: 3n }]),
      await orderFromItems(buyer, [{ productId: p.id, quantity: 1n }]),
      await orderFromItems(buyer, [{ productId: p.id, quantity: 1n }]),
    ];
    const bad = (call: Promise<unknown>) => expectError(call, Code.InvalidArgument, "idempotency_key");

    // UpdateOrderStatus: another reason, status or expected version (even the now-current one).
    const update = {
      orderId: o.id,
      status: S.CONFIRMED,
      expectedVersion: 1n,
      reason: "a",
      idempotencyKey: unique("k"),
    };
    await ord().updateOrderStatus(update);
    await bad(ord().updateOrderStatus({ ...update, reason: "b" }));
    await bad(ord().updateOrderStatus({ ...update, status: S.CANCELLED }));
    await bad(ord().updateOrderStatus({ ...update, status: S.PROCESSING, expectedVersion: 2n }));
    // RecordPayment: another amount, reference or status; or the update's key (same order's key space).
    const pay = {
      orderId: o.id,
      amount: { amountMinor: 100n, currencyCode: "EUR" },
      providerReference: "psp-1",
      status: PaymentStatus.CAPTURED,
      idempotencyKey: unique("k"),
    };
    await ord().recordPayment(pay);
    await bad(ord().recordPayment({ ...pay, amount: { amountMinor: 200n, currencyCode: "EUR" } }));
    await bad(ord().recordPayment({ ...pay, providerReference: "psp-2" }));
    await bad(ord().recordPayment({ ...pay, status: PaymentStatus.AUTHORIZED }));
    await bad(ord().recordPayment({ ...pay, idempotencyKey: update.idempotencyKey }));
    // RefundOrderItems: another quantity or reason.
    const refund = {
      orderId: o.id,
      items: [{ productId: p.id, quantity: 1n }],
      reason: "x",
      idempotencyKey: unique("k"),
    };
    await ord().refundOrderItems(refund);
    await bad(ord().refundOrderItems({ ...refund, items: [{ productId: p.id, quantity: 2n }] }));
    await bad(ord().refundOrderItems({ ...refund, reason: "y" }));
    // CancelOrder: another reason, an expected version, or another order.
    const cancel = { userId: buyer, orderId: c1.id, reason: "x", idempotencyKey: unique("k") };
    await ord().cancelOrder(cancel);
    await bad(ord().cancelOrder({ ...cancel, reason: "y" }));
    await bad(ord().cancelOrder({ ...cancel, expectedVersion: 1n }));
    await bad(ord().cancelOrder({ ...cancel, orderId: c2.id }));
    // ArchiveOrder: another order.
    await ord().cancelOrder({ userId: buyer, orderId: c2.id, reason: "", idempotencyKey: unique("k") });
    const archive = { userId: buyer, orderId: c1.id, idempotencyKey: unique("k") };
    await ord().archiveOrder(archive);
    await bad(ord().archiveOrder({ ...archive, orderId: c2.id }));

    const after = await getOrder(buyer, o.id);
    expect([after.status, after.version, after.paid?.amountMinor, after.refunded?.amountMinor]).toEqual([
      S.CONFIRMED,
      4n,
      100n,
      100n,
    ]);
    expect(after.payments).toHaveLength(1);
    expect(after.items[0]?.refundedQuantity).toBe(1n);
    expect(await history(buyer, c1.id)).toEqual([
      [1n, "created", S.PENDING],
      [2n, "status", S.CANCELLED],
      [3n, "archived", S.CANCELLED],
    ]);
    const untouched = await getOrder(buyer, c2.id);
    expect([untouched.status, untouched.archived, untouched.version]).toEqual([S.CANCELLED, false, 2n]);
    expect(await stock(p.id)).toMatchObject({ available: 7n, held: 0n, sold: 3n });
  });

  it("different requests racing on one key: exactly one takes effect, the others are INVALID_ARGUMENT", async () => {
    const buyer = userOnShard(app, 2, "buyer");
    const ps = await Promise.all([product(0), product(1)]);
    const key = unique("k");
    const creates = await Promise.all(
      [1n, 2n, 3n].map((quantity) =>
        settle(
          ord().createOrder({
            userId: buyer,
            source: { case: "items", value: { items: ps.map((p) => ({ productId: p.id, quantity })) } },
            customerEmail: "a@example.com",
            idempotencyKey: key,
          }),
        ),
      ),
    );
    const won = creates.flatMap((c) => (c.ok?.order ? [c.ok.order] : []));
    expect(won).toHaveLength(1);
    expect(creates.filter((c) => !c.ok).map((c) => Code[c.code ?? Code.Unknown])).toEqual([
      "InvalidArgument",
      "InvalidArgument",
    ]);
    const sold = won[0]?.items[0]?.quantity ?? 0n;
    expect(await rowsOf(buyer)).toEqual({ orders: 3, reservations: 1 });
    for (const p of ps) expect(await stock(p.id)).toMatchObject({ available: 10n - sold, held: 0n, sold });

    const child = won[0]?.childOrderIds[0] ?? "";
    const updateKey = unique("k");
    const updates = await Promise.all(
      ["a", "b", "c"].map((reason) =>
        settle(
          ord().updateOrderStatus({
            orderId: child,
            status: S.CONFIRMED,
            expectedVersion: 1n,
            reason,
            idempotencyKey: updateKey,
          }),
        ),
      ),
    );
    expect(updates.filter((u) => u.ok)).toHaveLength(1);
    expect(updates.filter((u) => !u.ok).map((u) => Code[u.code ?? Code.Unknown])).toEqual([
      "InvalidArgument",
      "InvalidArgument",
    ]);
    expect(await history(buyer, child)).toEqual([
      [1n, "created", S.PENDING],
      [2n, "status", S.CONFIRMED],
    ]);
  });
});

describe("after every replay", () => {
  it("the stock invariant holds and every order is consistent on every shard", async () => {
    const inv = client(InventoryService, transportFor("grpc-h2c", app.port));
    expect((await inv.checkStockInvariant({})).violations).toEqual([]);
    const violations = await Promise.all(app.shards.shards.map((s) => checkOrders(s.fork())));
    expect(violations.flat()).toEqual([]);
  });
});
