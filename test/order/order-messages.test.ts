import { equals, fromJson, isMessage, type JsonObject, toBinary, toJson } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { MoneySchema } from "../../gen/shop/common/v1/money_pb.js";
import { OrderItemSchema, OrderSchema, PaymentSchema } from "../../gen/shop/order/v1/order_pb.js";
import { orderMsg } from "../../src/order/order.messages.js";
import type { OrderView } from "../../src/order/order.model.js";

// orderMsg builds the message as typed literals (not create()), for fewer allocations per call.
// It must be the very message create() (here fromJson) makes: the same fields, the same bytes, a
// real message at every level.

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

/** The same order as protobuf JSON, written out by hand: what the message must hold. */
const json: JsonObject = {
  id: "ord_01JX0000000000000000000001",
  orderNumber: "SO-20261205-7K3Q9X",
  userId: "buyer-1",
  customerEmail: "buyer@example.com",
  status: "ORDER_STATUS_SHIPPED",
  reservationId: "rsv_1",
  items: [
    {
      productId: "prd_1",
      sellerId: "seller-a",
      warehouseId: "main",
      sku: "MUG-1",
      name: "Mug",
      quantity: "2",
      unitPrice: { amountMinor: "1499", currencyCode: "EUR" },
      lineTotal: { amountMinor: "2998", currencyCode: "EUR" },
      refundedQuantity: "1",
    },
    {
      productId: "prd_2",
      sellerId: "seller-b",
      warehouseId: "east",
      sku: "PLATE-1",
      name: "Plate",
      quantity: "1",
      unitPrice: { amountMinor: "1499", currencyCode: "EUR" },
      lineTotal: { amountMinor: "1499", currencyCode: "EUR" },
    },
  ],
  childOrderIds: ["ord_child_a", "ord_child_b"],
  total: { amountMinor: "4497", currencyCode: "EUR" },
  paid: { amountMinor: "4497", currencyCode: "EUR" },
  refunded: { amountMinor: "1499", currencyCode: "EUR" },
  payments: [
    {
      id: "pay_1",
      amount: { amountMinor: "4497", currencyCode: "EUR" },
      providerReference: "psp-42",
      status: "PAYMENT_STATUS_CAPTURED",
      createTime: "2026-11-30T10:00:01Z",
    },
  ],
  archived: true,
  version: "7",
  createTime: "2026-11-30T10:00:00.123Z",
  updateTime: "2026-12-01T08:30:00Z",
};

describe("orderMsg", () => {
  it("holds every field of the order, as create() would make it, and encodes the same bytes", () => {
    const got = orderMsg(view);
    const want = fromJson(OrderSchema, json);
    expect(equals(OrderSchema, got, want)).toBe(true);
    expect(got).toEqual(want);
    expect(toBinary(OrderSchema, got)).toEqual(toBinary(OrderSchema, want));
    expect(toJson(OrderSchema, got)).toEqual(json);
  });

  it("is a real message at every level", () => {
    const got = orderMsg(view);
    expect(isMessage(got, OrderSchema)).toBe(true);
    expect(got.items.every((i) => isMessage(i, OrderItemSchema))).toBe(true);
    expect(got.payments.every((p) => isMessage(p, PaymentSchema))).toBe(true);
    expect(isMessage(got.total, MoneySchema)).toBe(true);
    expect(got.items[0]?.unitPrice?.amountMinor).toBe(1499n);
  });

  it("leaves nothing set for an order with no lines, payments or children", () => {
    const bare = { ...view, items: [], payments: [], childOrderIds: [], archived: false, refundedMinor: 0 };
    const want = fromJson(OrderSchema, {
      ...json,
      items: [],
      payments: [],
      childOrderIds: [],
      archived: false,
      refunded: { currencyCode: "EUR" },
    });
    expect(orderMsg(bare)).toEqual(want);
    expect(toBinary(OrderSchema, orderMsg(bare))).toEqual(toBinary(OrderSchema, want));
  });
});
