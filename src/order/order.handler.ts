import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Money as MoneyMsg } from "../../gen/shop/common/v1/money_pb.js";
import {
  type OrderService as OrderServiceDesc,
  OrderSort,
  OrderStatus,
  PaymentStatus,
} from "../../gen/shop/order/v1/order_pb.js";
import { actorOf, principalKey } from "../auth/principal.js";
import { invalidArgument } from "../errors.js";
import { INVENTORY_LIMITS } from "../inventory/inventory.rules.js";
import { checkDistinctProducts } from "../reservation/reservation.rules.js";
import { shutdownSignalKey } from "../server/context.js";
import { type LinkedSignal, linkSignals } from "../server/signals.js";
import { parseId } from "../shard/ids.js";
import {
  CURRENCY_RULE,
  checkInt,
  checkOptionalInt,
  checkPageSize,
  checkString,
  IDEMPOTENCY_KEY_RULE,
  USER_ID_RULE,
} from "../validation.js";
import { decodeEventCursor } from "./event-cursor.js";
import {
  eventMsg,
  orderMsg,
  PAYMENT_FROM_PROTO,
  STATUS_FROM_PROTO,
  watchOrderResponse,
  watchOrdersResponse,
} from "./order.messages.js";
import type { OrderStatus as Status } from "./order.model.js";
import { OPERATOR_ACTOR } from "./order.model.js";
import { ORDER_LIMITS as L } from "./order.rules.js";
import type { OrderService } from "./order.service.js";
import type { WatchHub } from "./watch.js";

/** The OrderService edge: protobuf in, validated plain values to the service, protobuf out. */
export function orderHandler(service: OrderService, hub: WatchHub): ServiceImpl<typeof OrderServiceDesc> {
  const userId = (v: string, field = "user_id") => checkString(v, field, USER_ID_RULE);
  const key = (v: string) => checkString(v, "idempotency_key", IDEMPOTENCY_KEY_RULE);
  const orderId = (v: string) => {
    parseId(v, "ord", "order_id");
    return v;
  };
  const reason = (v: string, field = "reason") => checkString(v, field, L.reason);
  const status = (v: OrderStatus, field: string): Status => {
    const s = STATUS_FROM_PROTO.get(v);
    if (!s)
      throw invalidArgument(field, v === OrderStatus.UNSPECIFIED ? "is required" : "is not a known status");
    return s;
  };

  return {
    async createOrder(req) {
      const user = userId(req.userId);
      let source:
        | { reservationId: string }
        | { items: { productId: string; quantity: number; warehouseId: string }[] };
      if (req.source.case === "reservationId") {
        parseId(req.source.value, "res", "reservation_id");
        source = { reservationId: req.source.value };
      } else if (req.source.case === "items") {
        const items = req.source.value.items;
        if (items.length === 0) throw invalidArgument("items.items", "is required");
        if (items.length > L.maxItems)
          throw invalidArgument("items.items", `must list at most ${L.maxItems} products`);
        const checked = items.map((item, i) => {
          const f = `items.items[${i}]`;
          parseId(item.productId, "prd", `${f}.product_id`);
          return {
            productId: item.productId,
            quantity: checkInt(item.quantity, `${f}.quantity`, 1, L.maxQuantity),
            warehouseId:
              item.warehouseId === ""
                ? ""
                : checkString(item.warehouseId, `${f}.warehouse_id`, INVENTORY_LIMITS.warehouseId),
          };
        });
        checkDistinctProducts(
          checked.map((i) => i.productId),
          "items.items",
        );
        source = { items: checked };
      } else {
        throw invalidArgument("source", "set reservation_id or items");
      }
      const order = await service.create({
        userId: user,
        source,
        customerEmail: checkString(req.customerEmail, "customer_email", L.customerEmail),
        idempotencyKey: key(req.idempotencyKey),
      });
      return { order: orderMsg(order) };
    },

    async getOrder(req) {
      const { order, children } = await service.get(userId(req.userId), orderId(req.orderId));
      return { order: orderMsg(order), children: children.map(orderMsg) };
    },

    async listOrders(req) {
      const scoped = req.userId !== "";
      const min = checkOptionalInt(req.minTotalMinor, "min_total_minor", 0, L.maxAmountMinor);
      const max = checkOptionalInt(req.maxTotalMinor, "max_total_minor", 0, L.maxAmountMinor);
      if (min !== null && max !== null && min > max)
        throw invalidArgument("max_total_minor", "must not be less than min_total_minor");
      const after = req.createdAfter ? timestampMicros(req.createdAfter, "created_after") : null;
      const before = req.createdBefore ? timestampMicros(req.createdBefore, "created_before") : null;
      const page = await service.list({
        userId: scoped ? userId(req.userId) : null,
        createdAfter: after,
        createdBefore: before,
        statuses: [...new Set(req.statuses.map((s, i) => status(s, `statuses[${i}]`)))],
        minTotalMinor: min,
        maxTotalMinor: max,
        customerEmail:
          req.customerEmail === "" ? "" : checkString(req.customerEmail, "customer_email", L.customerEmail),
        includeArchived: req.includeArchived,
        sort: orderSort(req.sort),
        pageSize: checkPageSize(req.pageSize, "page_size", L.defaultPageSize, L.maxPageSize),
        pageToken: checkString(req.pageToken, "page_token", { max: 2048 }),
      });
      return { orders: page.orders.map(orderMsg), nextPageToken: page.nextPageToken };
    },

    async updateOrderStatus(req, ctx) {
      const order = await service.updateStatus({
        orderId: orderId(req.orderId),
        status: status(req.status, "status"),
        expectedVersion: checkInt(req.expectedVersion, "expected_version", 1, L.maxVersion),
        reason: reason(req.reason),
        idempotencyKey: key(req.idempotencyKey),
        actor: actor(ctx),
      });
      return { order: orderMsg(order) };
    },

    async cancelOrder(req) {
      const order = await service.cancel({
        userId: userId(req.userId),
        orderId: orderId(req.orderId),
        expectedVersion: checkOptionalInt(req.expectedVersion, "expected_version", 1, L.maxVersion),
        reason: reason(req.reason),
        idempotencyKey: key(req.idempotencyKey),
      });
      return { order: orderMsg(order) };
    },

    async archiveOrder(req) {
      const order = await service.archive({
        userId: userId(req.userId),
        orderId: orderId(req.orderId),
        idempotencyKey: key(req.idempotencyKey),
      });
      return { order: orderMsg(order) };
    },

    async recordPayment(req, ctx) {
      const id = orderId(req.orderId);
      const amount = paymentAmount(req.amount);
      const payStatus = PAYMENT_FROM_PROTO.get(req.status);
      if (!payStatus)
        throw invalidArgument(
          "status",
          req.status === PaymentStatus.UNSPECIFIED ? "is required" : "is not a known status",
        );
      const order = await service.recordPayment({
        orderId: id,
        amountMinor: amount.amountMinor,
        currencyCode: amount.currencyCode,
        providerReference: checkString(req.providerReference, "provider_reference", L.providerReference),
        status: payStatus,
        idempotencyKey: key(req.idempotencyKey),
        actor: actor(ctx),
      });
      return { order: orderMsg(order) };
    },

    async refundOrderItems(req, ctx) {
      const id = orderId(req.orderId);
      if (req.items.length === 0) throw invalidArgument("items", "is required");
      if (req.items.length > L.maxItems)
        throw invalidArgument("items", `must list at most ${L.maxItems} lines`);
      const items = req.items.map((item, i) => {
        parseId(item.productId, "prd", `items[${i}].product_id`);
        return {
          productId: item.productId,
          quantity: checkInt(item.quantity, `items[${i}].quantity`, 1, L.maxQuantity),
        };
      });
      checkDistinctProducts(
        items.map((i) => i.productId),
        "items",
      );
      const { order, refundMinor } = await service.refund({
        orderId: id,
        items,
        reason: reason(req.reason),
        idempotencyKey: key(req.idempotencyKey),
        actor: actor(ctx),
      });
      return {
        order: orderMsg(order),
        refundAmount: { amountMinor: BigInt(refundMinor), currencyCode: order.currencyCode },
      };
    },

    async getOrderHistory(req) {
      const events = await service.history(userId(req.userId), orderId(req.orderId));
      return { events: events.map(eventMsg) };
    },

    async listTopCustomers(req) {
      const limit = checkPageSize(req.limit, "limit", L.defaultTopCustomers, L.maxTopCustomers);
      const currency = checkString(req.currencyCode, "currency_code", CURRENCY_RULE);
      const top = await service.topCustomers(limit, currency);
      return {
        customers: top.map((c) => ({
          userId: c.userId,
          paidTotal: { amountMinor: BigInt(c.paidTotalMinor), currencyCode: currency },
          orderCount: BigInt(c.orderCount),
        })),
      };
    },

    async *watchOrder(req, ctx) {
      const user = userId(req.userId);
      const id = orderId(req.orderId);
      const after = checkInt(req.afterVersion, "after_version", 0, L.maxVersion);
      const ends = streamSignal(ctx);
      try {
        yield* hub.watchOrder(user, id, after, ends.signal, watchOrderResponse);
      } finally {
        ends.dispose();
      }
    },

    async *watchOrders(req, ctx) {
      const user = userId(req.userId);
      const after = decodeEventCursor(checkString(req.afterCursor, "after_cursor", { max: 512 }), user);
      const ends = streamSignal(ctx);
      try {
        yield* hub.watchOrders(user, after, ends.signal, watchOrdersResponse);
      } finally {
        ends.dispose();
      }
    },
  };
}

/** The history actor of a service or operator change: the caller's token subject. */
function actor(ctx: HandlerContext): string {
  return actorOf(ctx.values.get(principalKey), OPERATOR_ACTOR);
}

/**
 * Ends a stream when the caller goes away or the server starts draining. Disposed when the stream
 * ends, so the process-wide shutdown signal keeps nothing of it (signals.ts).
 */
function streamSignal(ctx: HandlerContext): LinkedSignal {
  return linkSignals(ctx.signal, ctx.values.get(shutdownSignalKey));
}

/**
 * A Timestamp as an exact RFC 3339 string at the database's microsecond precision. A bound between
 * two microseconds is rounded up, which keeps both `>= after` and `< before` exact for microsecond
 * values.
 */
function timestampMicros(ts: Timestamp, field: string): string {
  const micros = ts.seconds * 1_000_000n + BigInt(Math.ceil(ts.nanos / 1000));
  const date = new Date(Number(micros / 1000n));
  if (
    ts.nanos < 0 ||
    ts.nanos > 999_999_999 ||
    Number.isNaN(date.getTime()) ||
    date.getUTCFullYear() < 1 ||
    date.getUTCFullYear() > 9999
  )
    throw invalidArgument(field, "is not a valid time");
  const fraction = (((micros % 1_000_000n) + 1_000_000n) % 1_000_000n).toString().padStart(6, "0");
  return `${date.toISOString().slice(0, 19)}.${fraction}Z`;
}

function paymentAmount(value: MoneyMsg | undefined): { amountMinor: number; currencyCode: string } {
  if (!value) throw invalidArgument("amount", "is required");
  return {
    amountMinor: checkInt(value.amountMinor, "amount.amount_minor", 1, L.maxAmountMinor),
    currencyCode: checkString(value.currencyCode, "amount.currency_code", CURRENCY_RULE),
  };
}

function orderSort(value: OrderSort): "newest" | "highest_total" {
  switch (value) {
    case OrderSort.UNSPECIFIED:
    case OrderSort.NEWEST:
      return "newest";
    case OrderSort.HIGHEST_TOTAL:
      return "highest_total";
    default:
      throw invalidArgument("sort", "is not a known sort");
  }
}
