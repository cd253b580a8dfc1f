import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import { OrderService, OrderSort, PaymentStatus } from "../../gen/shop/order/v1/order_pb.js";
import type { App } from "../../src/app.js";
import { startTestApp, unique } from "../harness/app.js";
import { client, MAIN_TRANSPORTS, transportFor } from "../harness/clients.js";
import { seedProduct } from "../inventory/seed.js";

// ListOrders builds each order from ONE statement per shard (lines, children and payments as JSON
// aggregates); GetOrder loads it by id with separate queries. Both must give the same order, field
// for field: a multi-seller parent's lines are its children's in child order, payments in id order,
// refunded quantities, times to the millisecond.

let app: App & { port: number };
beforeAll(async () => {
  app = await startTestApp();
});
afterAll(async () => {
  await app?.shutdown();
});

describe.each(MAIN_TRANSPORTS)("ListOrders over %s", (name) => {
  const inv = () => client(InventoryService, transportFor(name, app.port));
  const ord = () => client(OrderService, transportFor(name, app.port));

  it("lists each order exactly as GetOrder returns it, in user and operator scope, both sorts", async () => {
    const buyer = unique("views-buyer");
    const email = `${unique("views")}@example.test`;
    const [s1, s2] = [unique("seller"), unique("seller")];
    const a1 = await seedProduct(inv(), s1, { price: 500 });
    const a2 = await seedProduct(inv(), s1, { price: 250 });
    const b1 = await seedProduct(inv(), s2, { price: 1999 });
    const create = async (items: [string, bigint][]) => {
      const { order } = await ord().createOrder({
        userId: buyer,
        source: {
          case: "items",
          value: { items: items.map(([productId, quantity]) => ({ productId, quantity })) },
        },
        customerEmail: email,
        idempotencyKey: unique("k"),
      });
      if (!order) throw new Error("no order");
      return order;
    };
    const pay = (orderId: string, amountMinor: bigint, ref: string, status: PaymentStatus) =>
      ord().recordPayment({
        orderId,
        amount: { amountMinor, currencyCode: "EUR" },
        providerReference: ref,
        status,
        idempotencyKey: unique("k"),
      });
    const refund = (orderId: string, productId: string) =>
      ord().refundOrderItems({
        orderId,
        items: [{ productId, quantity: 1n }],
        reason: "damaged",
        idempotencyKey: unique("k"),
      });

    const parent = await create([
      [b1.id, 1n],
      [a1.id, 2n],
      [a2.id, 1n],
    ]);
    expect(parent.childOrderIds).toHaveLength(2);
    await pay(parent.id, 1000n, "psp-b", PaymentStatus.AUTHORIZED);
    await pay(parent.id, 1000n, "psp-b", PaymentStatus.CAPTURED);
    await pay(parent.id, 200n, "psp-a", PaymentStatus.FAILED);
    await refund(parent.id, a1.id);
    const single = await create([
      [a2.id, 2n],
      [a1.id, 1n],
    ]);
    await pay(single.id, 1000n, "psp-c", PaymentStatus.CAPTURED);
    await refund(single.id, a2.id);
    const bare = await create([[b1.id, 1n]]);
    await ord().cancelOrder({ userId: buyer, orderId: bare.id, reason: "", idempotencyKey: unique("k") });

    const ids = [parent.id, single.id, bare.id];
    const got = await Promise.all(ids.map((orderId) => ord().getOrder({ userId: buyer, orderId })));
    const byId = new Map(got.map((g) => [g.order?.id, g.order]));
    expect(byId.get(parent.id)?.items).toHaveLength(3);
    expect(byId.get(parent.id)?.payments).toHaveLength(2);
    for (const sort of [OrderSort.NEWEST, OrderSort.HIGHEST_TOTAL]) {
      for (const scope of [{ userId: buyer }, { customerEmail: email }]) {
        const listed = (await ord().listOrders({ ...scope, sort })).orders;
        expect(new Set(listed.map((o) => o.id))).toEqual(new Set(ids));
        for (const o of listed) expect(o).toEqual(byId.get(o.id));
      }
    }
  });
});
