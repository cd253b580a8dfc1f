import { create, equals, isMessage, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { MoneySchema } from "../../gen/shop/common/v1/money_pb.js";
import {
  OrderItemSchema,
  OrderSchema,
  OrderStatus,
  PaymentSchema,
  PaymentStatus,
} from "../../gen/shop/order/v1/order_pb.js";
import { orderMsg } from "../../src/order/order.messages.js";
import type { OrderView } from "../../src/order/order.model.js";

// orderMsg builds the message as typed literals (not create()), for fewer allocations per call.
// It must be the very message create() makes: the same fields, the same bytes, a real message at
// every level.

const at = (iso: string) => new Date(iso);
const view: OrderView = {
  id: "ord_01JX0000000000000000000001",
  orderNumber: "SO-20261205-7K3Q9X",
  userId: "buyer-1",
  customerEmail: "buyer@example.com",
  status: "shipped",
  parentOrderId: "",
  sellerId: "",
  reservationId: "rsv_1",
  currencyCode: "EUR",
  totalMinor: 4497,
  paidMinor: 4497,
  refundedMinor: 1499,
  stockStatus: "sold",
  archived: true,
  version: 7,
  createdAt: at("2026-11-30T10:00:00.123Z"),
  updatedAt: at("2026-12-01T08:30:00Z"),
  items: [
    {
      productId: "prd_1",
      sellerId: "seller-a",
      warehouseId: "main",
      sku: "MUG-1",
      name: "Mug",
      quantity: 2,
      unitPriceMinor: 1499,
      lineTotalMinor: 2998,
      refundedQuantity: 1,
    },
    {
      productId: "prd_2",
      sellerId: "seller-b",
      warehouseId: "east",
      sku: "PLATE-1",
      name: "Plate",
      quantity: 1,
      unitPriceMinor: 1499,
      lineTotalMinor: 1499,
      refundedQuantity: 0,
    },
  ],
  childOrderIds: ["ord_child_a", "ord_child_b"],
  payments: [
    {
      id: "pay_1",
      amountMinor: 4497,
      currencyCode: "EUR",
      providerReference: "psp-42",
      status: "captured",
      createdAt: at("2026-11-30T10:00:01Z"),
    },
  ],
};

/** The message as create() makes it from a plain init (how orderMsg built it before). */
function viaCreate(o: OrderView) {
  const money = (amountMinor: number, currencyCode: string) => ({
    amountMinor: BigInt(amountMinor),
    currencyCode,
  });
  return create(OrderSchema, {
    id: o.id,
    orderNumber: o.orderNumber,
    userId: o.userId,
    customerEmail: o.customerEmail,
    status: OrderStatus.SHIPPED,
    parentOrderId: o.parentOrderId,
    sellerId: o.sellerId,
    items: o.items.map((i) => ({
      productId: i.productId,
      sellerId: i.sellerId,
      warehouseId: i.warehouseId,
      sku: i.sku,
      name: i.name,
      quantity: BigInt(i.quantity),
      unitPrice: money(i.unitPriceMinor, o.currencyCode),
      lineTotal: money(i.lineTotalMinor, o.currencyCode),
      refundedQuantity: BigInt(i.refundedQuantity),
    })),
    childOrderIds: o.childOrderIds,
    total: money(o.totalMinor, o.currencyCode),
    paid: money(o.paidMinor, o.currencyCode),
    refunded: money(o.refundedMinor, o.currencyCode),
    payments: o.payments.map((p) => ({
      id: p.id,
      amount: money(p.amountMinor, p.currencyCode),
      providerReference: p.providerReference,
      status: PaymentStatus.CAPTURED,
      createTime: timestampFromDate(p.createdAt),
    })),
    reservationId: o.reservationId,
    archived: o.archived,
    version: BigInt(o.version),
    createTime: timestampFromDate(o.createdAt),
    updateTime: timestampFromDate(o.updatedAt),
  });
}

describe("orderMsg", () => {
  it("equals create()'s message, field by field and byte for byte", () => {
    const got = orderMsg(view);
    const want = viaCreate(view);
    expect(equals(OrderSchema, got, want)).toBe(true);
    expect(got).toEqual(want);
    expect(toBinary(OrderSchema, got)).toEqual(toBinary(OrderSchema, want));
  });

  it("is a real message at every level", () => {
    const got = orderMsg(view);
    expect(isMessage(got, OrderSchema)).toBe(true);
    expect(got.items.every((i) => isMessage(i, OrderItemSchema))).toBe(true);
    expect(got.payments.every((p) => isMessage(p, PaymentSchema))).toBe(true);
    expect(isMessage(got.total, MoneySchema)).toBe(true);
    expect(got.items[0]?.unitPrice?.amountMinor).toBe(1499n);
  });

  it("matches create() for an order with no lines, payments or children", () => {
    const bare = { ...view, items: [], payments: [], childOrderIds: [], archived: false, refundedMinor: 0 };
    expect(toBinary(OrderSchema, orderMsg(bare))).toEqual(toBinary(OrderSchema, viaCreate(bare)));
    expect(orderMsg(bare)).toEqual(viaCreate(bare));
  });
});
