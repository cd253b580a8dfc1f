import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Money } from "../../gen/shop/common/v1/money_pb.js";
import {
  type Heartbeat,
  type Order,
  type OrderEvent,
  type OrderItem,
  OrderStatus,
  type Payment,
  PaymentStatus,
  type WatchOrderResponse,
  type WatchOrdersResponse,
} from "../../gen/shop/order/v1/order_pb.js";
import { encodeEventCursor } from "./event-cursor.js";
import type {
  OrderEventView,
  OrderView,
  PaymentStatus as PayStatus,
  OrderStatus as Status,
} from "./order.model.js";
import type { WatchItem } from "./watch.js";

/** Domain values to protobuf messages (and the enum mappings both ways) for the OrderService edge. */

export const STATUS: Record<Status, OrderStatus> = {
  pending: OrderStatus.PENDING,
  confirmed: OrderStatus.CONFIRMED,
  processing: OrderStatus.PROCESSING,
  shipped: OrderStatus.SHIPPED,
  delivered: OrderStatus.DELIVERED,
  cancelled: OrderStatus.CANCELLED,
};
export const STATUS_FROM_PROTO = new Map(Object.entries(STATUS).map(([k, v]) => [v, k as Status]));
export const PAYMENT: Record<PayStatus, PaymentStatus> = {
  authorized: PaymentStatus.AUTHORIZED,
  captured: PaymentStatus.CAPTURED,
  failed: PaymentStatus.FAILED,
};
export const PAYMENT_FROM_PROTO = new Map(Object.entries(PAYMENT).map(([k, v]) => [v, k as PayStatus]));

/**
 * One item of a watch stream as the oneof of WatchOrderResponse / WatchOrdersResponse. Whole messages
 * (typed literals, like orderMsg), so connect passes them on instead of copying them with create().
 */
export function watchMessage(
  item: WatchItem,
): WatchOrderResponse["message"] & WatchOrdersResponse["message"] {
  if (item.kind === "event") return { case: "event", value: eventMsg(item.event) };
  const heartbeat: Heartbeat = {
    $typeName: "shop.order.v1.Heartbeat",
    serverTime: timestampFromDate(item.at),
  };
  return { case: "heartbeat", value: heartbeat };
}

/** A WatchOrder stream's item. */
export function watchOrderResponse(item: WatchItem): WatchOrderResponse {
  return { $typeName: "shop.order.v1.WatchOrderResponse", message: watchMessage(item) };
}

/** A WatchOrders stream's item. */
export function watchOrdersResponse(item: WatchItem): WatchOrdersResponse {
  return { $typeName: "shop.order.v1.WatchOrdersResponse", message: watchMessage(item) };
}

function money(amountMinor: number, currencyCode: string): Money {
  return { $typeName: "shop.common.v1.Money", amountMinor: BigInt(amountMinor), currencyCode };
}

/**
 * An order as its message. Built as typed literals, not with create(): create() copies an init
 * object into a new message at every level, and ListOrders maps 20 orders (with their lines,
 * payments and money) per call, so the copies were a good share of what a call allocated (and of
 * how often the server scavenges). The message types name every field, so tsc checks that none is
 * left out; a test checks it field by field and byte for byte against the order written out as
 * protobuf JSON (fromJson, which makes messages as create() does).
 */
export function orderMsg(o: OrderView): Order {
  return {
    $typeName: "shop.order.v1.Order",
    id: o.id,
    orderNumber: o.orderNumber,
    userId: o.userId,
    customerEmail: o.customerEmail,
    status: STATUS[o.status],
    parentOrderId: o.parentOrderId,
    sellerId: o.sellerId,
    items: o.items.map(
      (i): OrderItem => ({
        $typeName: "shop.order.v1.OrderItem",
        productId: i.productId,
        sellerId: i.sellerId,
        warehouseId: i.warehouseId,
        sku: i.sku,
        name: i.name,
        quantity: BigInt(i.quantity),
        unitPrice: money(i.unitPriceMinor, o.currencyCode),
        lineTotal: money(i.lineTotalMinor, o.currencyCode),
        refundedQuantity: BigInt(i.refundedQuantity),
      }),
    ),
    childOrderIds: o.childOrderIds,
    total: money(o.totalMinor, o.currencyCode),
    paid: money(o.paidMinor, o.currencyCode),
    refunded: money(o.refundedMinor, o.currencyCode),
    payments: o.payments.map(
      (p): Payment => ({
        $typeName: "shop.order.v1.Payment",
        id: p.id,
        amount: money(p.amountMinor, p.currencyCode),
        providerReference: p.providerReference,
        status: PAYMENT[p.status],
        createTime: timestampFromDate(p.createdAt),
      }),
    ),
    reservationId: o.reservationId,
    archived: o.archived,
    version: BigInt(o.version),
    createTime: timestampFromDate(o.createdAt),
    updateTime: timestampFromDate(o.updatedAt),
  };
}

export function eventMsg(e: OrderEventView): OrderEvent {
  return {
    $typeName: "shop.order.v1.OrderEvent",
    orderId: e.orderId,
    version: BigInt(e.version),
    fromStatus: e.fromStatus === "" ? OrderStatus.UNSPECIFIED : STATUS[e.fromStatus],
    toStatus: STATUS[e.toStatus],
    kind: e.kind,
    reason: e.reason,
    actor: e.actor,
    createTime: timestampFromDate(e.createdAt),
    cursor: encodeEventCursor(e.userId, e.seq),
  };
}
