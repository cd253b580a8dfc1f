import { randomInt } from "node:crypto";
import type { EntityManager } from "@mikro-orm/postgresql";
import type {
  OrderItemView,
  OrderStatus,
  OrderView,
  PaymentStatus,
  PaymentView,
  StockStatus,
} from "./order.model.js";

/** SQL of the order module: rows on the buyer's shard. */

type Row = Record<string, unknown>;
/** The columns toRow reads (ListOrders selects them too, in its one statement). */
export const COLUMNS = `id, order_number, user_id, customer_email, status, parent_order_id, seller_id, reservation_id,
  currency_code, total_minor, paid_minor, refunded_minor, stock_status, archived, version, created_at, updated_at`;

/** An order row without its items, children and payments. */
export type OrderRow = Omit<OrderView, "items" | "childOrderIds" | "payments">;

function toRow(r: Row): OrderRow {
  return {
    id: String(r.id),
    orderNumber: String(r.order_number),
    userId: String(r.user_id),
    customerEmail: String(r.customer_email),
    status: r.status as OrderStatus,
    parentOrderId: r.parent_order_id === null ? "" : String(r.parent_order_id),
    sellerId: String(r.seller_id),
    reservationId: String(r.reservation_id),
    currencyCode: String(r.currency_code),
    totalMinor: Number(r.total_minor),
    paidMinor: Number(r.paid_minor),
    refundedMinor: Number(r.refunded_minor),
    stockStatus: r.stock_status as StockStatus,
    archived: r.archived === true,
    version: Number(r.version),
    createdAt: new Date(r.created_at as string),
    updatedAt: new Date(r.updated_at as string),
  };
}

/** True for a multi-seller parent: it has children and holds no stock or lines of its own. */
export function isParent(o: OrderRow): boolean {
  return o.stockStatus === "none";
}

const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/**
 * A human-readable order number, e.g. SO-20261123-K7M3Q9XA: the UTC date, the order's bucket (two
 * characters: 32 x 32 = 1024 buckets) and six random characters. The bucket makes numbers of
 * different shards distinct; the unique constraint catches the rare repeat within one, and the
 * insert retries with another number.
 */
export function newOrderNumber(bucket: number, now = new Date()): string {
  const date = now.toISOString().slice(0, 10).replaceAll("-", "");
  let random = "";
  for (let i = 0; i < 6; i++) random += ALPHABET[randomInt(32)];
  return `SO-${date}-${ALPHABET[bucket >> 5]}${ALPHABET[bucket & 31]}${random}`;
}

export interface NewOrder {
  id: string;
  bucket: number;
  userId: string;
  customerEmail: string;
  parentOrderId: string | null;
  sellerId: string;
  reservationId: string;
  currencyCode: string;
  totalMinor: number;
  stockStatus: StockStatus;
  items: OrderItemView[];
}

/** Inserts an order (status PENDING, version 1) and its items, with a fresh unique order number. */
export async function insertOrder(tx: EntityManager, o: NewOrder): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const rows = await tx.execute<Row[]>(
      `insert into orders (id, bucket, order_number, user_id, customer_email, status, parent_order_id, seller_id,
         reservation_id, currency_code, total_minor, stock_status)
       values (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?)
       on conflict (order_number) do nothing returning id`,
      [
        o.id,
        o.bucket,
        newOrderNumber(o.bucket),
        o.userId,
        o.customerEmail,
        o.parentOrderId,
        o.sellerId,
        o.reservationId,
        o.currencyCode,
        o.totalMinor,
        o.stockStatus,
      ],
    );
    if (rows.length > 0) break;
    if (attempt >= 10) throw new Error("could not find a free order number");
  }
  for (const item of o.items) {
    await tx.execute(
      `insert into order_items (order_id, product_id, seller_id, warehouse_id, sku, name, quantity,
         unit_price_minor, line_total_minor)
       values (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [
        o.id,
        item.productId,
        item.sellerId,
        item.warehouseId,
        item.sku,
        item.name,
        item.quantity,
        item.unitPriceMinor,
        item.lineTotalMinor,
      ],
    );
  }
}

/** One order row; `lock` takes its row lock (FOR UPDATE) in the caller's transaction. */
export async function findOrderRow(
  em: EntityManager,
  id: string,
  lock = false,
): Promise<OrderRow | undefined> {
  const rows = await em.execute<Row[]>(
    `select ${COLUMNS} from orders where id = ?${lock ? " for update" : ""}`,
    [id],
  );
  return rows[0] ? toRow(rows[0]) : undefined;
}

/** The order's buyer and version, or undefined when there is no such order (the watch streams' owner check). */
export async function orderOwner(
  em: EntityManager,
  orderId: string,
): Promise<{ userId: string; version: number } | undefined> {
  const rows = await em.execute<Row[]>("select user_id, version from orders where id = ?", [orderId]);
  return rows[0] ? { userId: String(rows[0].user_id), version: Number(rows[0].version) } : undefined;
}

/** The order of a reservation (top-level), if one was made from it. */
export async function findOrderIdByReservation(
  em: EntityManager,
  reservationId: string,
): Promise<string | null> {
  const rows = await em.execute<Row[]>(
    "select id from orders where reservation_id = ? and parent_order_id is null",
    [reservationId],
  );
  return rows[0] ? String(rows[0].id) : null;
}

/** A parent's children, in id order; `lock` locks them too. */
export async function childRows(em: EntityManager, parentId: string, lock = false): Promise<OrderRow[]> {
  const rows = await em.execute<Row[]>(
    `select ${COLUMNS} from orders where parent_order_id = ? order by id${lock ? " for update" : ""}`,
    [parentId],
  );
  return rows.map(toRow);
}

function toItem(r: Row): OrderItemView {
  return {
    productId: String(r.product_id),
    sellerId: String(r.seller_id),
    warehouseId: String(r.warehouse_id),
    sku: String(r.sku),
    name: String(r.name),
    quantity: Number(r.quantity),
    unitPriceMinor: Number(r.unit_price_minor),
    lineTotalMinor: Number(r.line_total_minor),
    refundedQuantity: Number(r.refunded_quantity),
  };
}

/** The lines of the given orders (their own lines), keyed by order id. */
export async function itemsOf(em: EntityManager, orderIds: string[]): Promise<Map<string, OrderItemView[]>> {
  const out = new Map<string, OrderItemView[]>();
  if (orderIds.length === 0) return out;
  const rows = await em.execute<Row[]>(
    `select order_id, product_id, seller_id, warehouse_id, sku, name, quantity, unit_price_minor,
       line_total_minor, refunded_quantity
     from order_items where order_id in (?) order by order_id, product_id`,
    [orderIds],
  );
  for (const r of rows) {
    const list = out.get(String(r.order_id)) ?? [];
    list.push(toItem(r));
    out.set(String(r.order_id), list);
  }
  return out;
}

async function paymentsOf(em: EntityManager, orderIds: string[]): Promise<Map<string, PaymentView[]>> {
  const out = new Map<string, PaymentView[]>();
  if (orderIds.length === 0) return out;
  const rows = await em.execute<Row[]>(
    `select id, order_id, amount_minor, currency_code, provider_reference, status, created_at
     from order_payments where order_id in (?) order by order_id, id`,
    [orderIds],
  );
  for (const r of rows) {
    const list = out.get(String(r.order_id)) ?? [];
    list.push(toPayment(r));
    out.set(String(r.order_id), list);
  }
  return out;
}

function toPayment(r: Row): PaymentView {
  return {
    id: String(r.id),
    amountMinor: Number(r.amount_minor),
    currencyCode: String(r.currency_code),
    providerReference: String(r.provider_reference),
    status: r.status as PaymentStatus,
    createdAt: new Date(r.created_at as string),
  };
}

/**
 * The full view of one row of the ListOrders statement (order.queries.ts): the order's columns, its
 * children's ids (`child_ids`, text[]) and its lines and payments as JSON arrays of their rows, in
 * the order loadOrders gives them. JSON carries int64 columns as numbers and times as ISO strings
 * with microseconds; Number() and new Date() read them exactly as they read the column values.
 */
export function toListedView(r: Row): OrderView {
  return {
    ...toRow(r),
    items: ((r.items as Row[] | null) ?? []).map(toItem),
    childOrderIds: ((r.child_ids as string[] | null) ?? []).map(String),
    payments: ((r.payments as Row[] | null) ?? []).map(toPayment),
  };
}

/**
 * Full views of the given orders (missing ids are left out): a parent's items are all its
 * children's lines, in child order. A constant number of queries, whatever the number of orders.
 */
export async function loadOrders(em: EntityManager, ids: string[]): Promise<Map<string, OrderView>> {
  const out = new Map<string, OrderView>();
  if (ids.length === 0) return out;
  const rows = (await em.execute<Row[]>(`select ${COLUMNS} from orders where id in (?)`, [ids])).map(toRow);
  const parents = rows.filter(isParent).map((r) => r.id);
  const children =
    parents.length === 0
      ? []
      : (
          await em.execute<Row[]>(
            "select id, parent_order_id from orders where parent_order_id in (?) order by id",
            [parents],
          )
        ).map((r) => ({ id: String(r.id), parentId: String(r.parent_order_id) }));
  const [items, payments] = await Promise.all([
    itemsOf(em, [...rows.map((r) => r.id), ...children.map((c) => c.id)]),
    paymentsOf(
      em,
      rows.map((r) => r.id),
    ),
  ]);
  for (const row of rows) {
    const childIds = children.filter((c) => c.parentId === row.id).map((c) => c.id);
    const lines = isParent(row) ? childIds.flatMap((c) => items.get(c) ?? []) : (items.get(row.id) ?? []);
    out.set(row.id, { ...row, items: lines, childOrderIds: childIds, payments: payments.get(row.id) ?? [] });
  }
  return out;
}

/** One full view; undefined when there is no such order. */
export async function loadOrder(em: EntityManager, id: string): Promise<OrderView | undefined> {
  return (await loadOrders(em, [id])).get(id);
}

/**
 * Applies a change to one (locked) order row: new values, version + 1, updated_at now. Returns the
 * new version. The caller appends the history row in the same transaction.
 */
export async function updateOrder(
  tx: EntityManager,
  id: string,
  set: Partial<{
    status: OrderStatus;
    stockStatus: StockStatus;
    archived: boolean;
    paidDelta: number;
    refundedDelta: number;
  }>,
): Promise<number> {
  const rows = await tx.execute<Row[]>(
    `update orders set
       status = coalesce(?, status),
       stock_status = coalesce(?, stock_status),
       archived = coalesce(?, archived),
       paid_minor = paid_minor + ?,
       refunded_minor = refunded_minor + ?,
       version = version + 1, updated_at = now()
     where id = ? returning version`,
    [
      set.status ?? null,
      set.stockStatus ?? null,
      set.archived ?? null,
      set.paidDelta ?? 0,
      set.refundedDelta ?? 0,
      id,
    ],
  );
  return Number(rows[0]?.version);
}

/** Moves the stock status without a new version (bookkeeping of the stock steps, not a change the buyer sees). */
export async function setStockStatus(
  em: EntityManager,
  ids: string[],
  from: StockStatus,
  to: StockStatus,
): Promise<void> {
  if (ids.length === 0) return;
  await em.execute("update orders set stock_status = ? where id in (?) and stock_status = ?", [
    to,
    ids,
    from,
  ]);
}

/** Orders whose stock step did not finish (a crash after the commit), older than the bound. */
export async function ordersToRepair(
  em: EntityManager,
  olderThanSeconds: number,
  limit: number,
): Promise<OrderRow[]> {
  const rows = await em.execute<Row[]>(
    `select ${COLUMNS} from orders where stock_status in ('reserved', 'returning')
       and updated_at < now() - make_interval(secs => ?)
     order by created_at limit ?`,
    [olderThanSeconds, limit],
  );
  return rows.map(toRow);
}

/** Raises the refunded quantity of one line; false when more than the unrefunded quantity was asked. */
export async function refundLine(
  tx: EntityManager,
  orderId: string,
  productId: string,
  quantity: number,
): Promise<boolean> {
  const res = await tx.execute<{ affectedRows: number }>(
    `update order_items set refunded_quantity = refunded_quantity + ?
     where order_id = ? and product_id = ? and refunded_quantity + ? <= quantity`,
    [quantity, orderId, productId, quantity],
    "run",
  );
  return res.affectedRows > 0;
}

export async function findPayment(
  tx: EntityManager,
  orderId: string,
  providerReference: string,
): Promise<{ id: string; amountMinor: number; status: PaymentStatus } | undefined> {
  const rows = await tx.execute<Row[]>(
    "select id, amount_minor, status from order_payments where order_id = ? and provider_reference = ?",
    [orderId, providerReference],
  );
  const r = rows[0];
  return r
    ? { id: String(r.id), amountMinor: Number(r.amount_minor), status: r.status as PaymentStatus }
    : undefined;
}

export async function insertPayment(
  tx: EntityManager,
  p: {
    id: string;
    orderId: string;
    amountMinor: number;
    currencyCode: string;
    providerReference: string;
    status: PaymentStatus;
  },
): Promise<void> {
  await tx.execute(
    `insert into order_payments (id, order_id, amount_minor, currency_code, provider_reference, status)
     values (?, ?, ?, ?, ?, ?)`,
    [p.id, p.orderId, p.amountMinor, p.currencyCode, p.providerReference, p.status],
  );
}

export async function setPaymentStatus(tx: EntityManager, id: string, status: PaymentStatus): Promise<void> {
  await tx.execute("update order_payments set status = ?, updated_at = now() where id = ?", [status, id]);
}
