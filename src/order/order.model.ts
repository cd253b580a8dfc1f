/** Plain domain values of the order module, and its one state machine. */

export type OrderStatus = "pending" | "confirmed" | "processing" | "shipped" | "delivered" | "cancelled";

export const ORDER_STATUSES: readonly OrderStatus[] = [
  "pending",
  "confirmed",
  "processing",
  "shipped",
  "delivered",
  "cancelled",
];

/**
 * THE state machine: every status an order may move to from each status. Nothing else in the code
 * decides whether a move is legal (docs/orders.md prints this table). CANCELLED returns the stock.
 */
export const TRANSITIONS: Readonly<Record<OrderStatus, readonly OrderStatus[]>> = {
  pending: ["confirmed", "cancelled"],
  confirmed: ["processing", "cancelled"],
  processing: ["shipped", "cancelled"],
  shipped: ["delivered"],
  delivered: [],
  cancelled: [],
};

export function canMove(from: OrderStatus, to: OrderStatus): boolean {
  return TRANSITIONS[from].includes(to);
}

/** Statuses from which nothing moves any more. */
export const FINAL: ReadonlySet<OrderStatus> = new Set(["delivered", "cancelled"]);

/**
 * A multi-seller parent's status follows its children: CANCELLED when every child is cancelled,
 * otherwise the least advanced status among the children that are not cancelled.
 */
export function parentStatus(children: readonly OrderStatus[]): OrderStatus {
  const live = children.filter((s) => s !== "cancelled");
  if (live.length === 0) return "cancelled";
  const rank = (s: OrderStatus) => ORDER_STATUSES.indexOf(s);
  return live.reduce((min, s) => (rank(s) < rank(min) ? s : min));
}

/**
 * Where an order's stock is: `none` (a parent: its children hold the stock), `reserved` (holds still
 * held: the sale is being completed), `sold`, `returning` (cancelled: stock being given back) and
 * `returned`. The repair pass finishes `reserved` and `returning` after a crash.
 */
export type StockStatus = "none" | "reserved" | "sold" | "returning" | "returned";

export type PaymentStatus = "authorized" | "captured" | "failed";

export type EventKind = "created" | "status" | "payment" | "refund" | "archived";

export interface OrderItemView {
  productId: string;
  sellerId: string;
  warehouseId: string;
  sku: string;
  name: string;
  quantity: number;
  unitPriceMinor: number;
  lineTotalMinor: number;
  refundedQuantity: number;
}

export interface PaymentView {
  id: string;
  amountMinor: number;
  currencyCode: string;
  providerReference: string;
  status: PaymentStatus;
  createdAt: Date;
}

export interface OrderView {
  id: string;
  orderNumber: string;
  userId: string;
  customerEmail: string;
  status: OrderStatus;
  /** '' for a top-level order. */
  parentOrderId: string;
  /** '' for a multi-seller parent. */
  sellerId: string;
  reservationId: string;
  currencyCode: string;
  totalMinor: number;
  paidMinor: number;
  refundedMinor: number;
  stockStatus: StockStatus;
  archived: boolean;
  version: number;
  createdAt: Date;
  updatedAt: Date;
  /** A parent's lines are all its children's lines. */
  items: OrderItemView[];
  childOrderIds: string[];
  payments: PaymentView[];
}

/** One row of order_events: one change of one order. */
export interface OrderEventView {
  userId: string;
  /** Position in the user's event stream (commit order); the WatchOrders cursor. */
  seq: number;
  orderId: string;
  /** The order's version after the change; one order's events have consecutive versions. */
  version: number;
  kind: EventKind;
  /** '' for creation. */
  fromStatus: OrderStatus | "";
  toStatus: OrderStatus;
  reason: string;
  actor: string;
  createdAt: Date;
}

/** Who made a change, as recorded in the history. */
export const SYSTEM_ACTOR = "system";
export const OPERATOR_ACTOR = "operator";
