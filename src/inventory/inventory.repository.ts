import type { EntityManager } from "@mikro-orm/postgresql";
import { DomainError } from "../errors.js";
import type { MovementKind, MovementView, ProductView, StockLevel } from "./inventory.model.js";
import { MOVEMENT_DELTAS } from "./inventory.rules.js";

/**
 * SQL of the inventory module. Stock only ever changes through one statement that updates the stock
 * row conditionally and writes its ledger row (a CTE), so there is no read-then-write in memory and
 * the CHECK constraints of the schema back every step.
 */

type Row = Record<string, unknown>;
const n = (v: unknown): number => Number(v);

export function toStock(r: Row): StockLevel {
  return {
    warehouseId: String(r.warehouse_id),
    available: n(r.available),
    held: n(r.held),
    sold: n(r.sold),
    received: n(r.received),
    writtenOff: n(r.written_off),
  };
}

export function toProduct(r: Row, stock: StockLevel[]): ProductView {
  return {
    id: String(r.id),
    sellerId: String(r.seller_id),
    sku: String(r.sku),
    name: String(r.name),
    description: String(r.description),
    category: String(r.category),
    price: { amountMinor: n(r.price_minor), currencyCode: String(r.currency_code) },
    version: n(r.version),
    stock,
    createdAt: new Date(r.created_at as string),
    updatedAt: new Date(r.updated_at as string),
  };
}

function toMovement(r: Row): MovementView {
  return {
    id: String(r.id),
    productId: String(r.product_id),
    warehouseId: String(r.warehouse_id),
    kind: r.kind as MovementKind,
    quantity: n(r.quantity),
    deltas: {
      available: n(r.d_available),
      held: n(r.d_held),
      sold: n(r.d_sold),
      received: n(r.d_received),
      writtenOff: n(r.d_written_off),
    },
    reason: String(r.reason),
    reference: String(r.reference),
    createdAt: new Date(r.created_at as string),
  };
}

export const PRODUCT_COLUMNS =
  "id, seller_id, sku, name, description, category, price_minor, currency_code, version, created_at, updated_at";

export async function insertProduct(
  em: EntityManager,
  p: Omit<ProductView, "stock" | "version" | "createdAt" | "updatedAt"> & { bucket: number },
): Promise<Row> {
  const rows = await em.execute<Row[]>(
    `insert into products (id, bucket, seller_id, sku, name, description, category, price_minor, currency_code)
     values (?, ?, ?, ?, ?, ?, ?, ?, ?)
     on conflict (seller_id, sku) do nothing
     returning ${PRODUCT_COLUMNS}`,
    [
      p.id,
      p.bucket,
      p.sellerId,
      p.sku,
      p.name,
      p.description,
      p.category,
      p.price.amountMinor,
      p.price.currencyCode,
    ],
  );
  const row = rows[0];
  if (!row)
    throw new DomainError("already_exists", "sku: the seller already has a product with this sku", {
      field: "sku",
    });
  return row;
}

export async function findProductRow(
  em: EntityManager,
  productId: string,
  forUpdate = false,
): Promise<Row | undefined> {
  const rows = await em.execute<Row[]>(
    `select ${PRODUCT_COLUMNS} from products where id = ?${forUpdate ? " for update" : ""}`,
    [productId],
  );
  return rows[0];
}

export async function stockOf(em: EntityManager, productIds: string[]): Promise<Map<string, StockLevel[]>> {
  const out = new Map<string, StockLevel[]>();
  if (productIds.length === 0) return out;
  const rows = await em.execute<Row[]>(
    "select * from stock where product_id in (?) order by product_id, warehouse_id",
    [productIds],
  );
  for (const r of rows) {
    const list = out.get(String(r.product_id)) ?? [];
    list.push(toStock(r));
    out.set(String(r.product_id), list);
  }
  return out;
}

/** Updates the descriptive fields if the version matches; returns undefined when it does not. */
export async function updateProductRow(
  em: EntityManager,
  u: {
    productId: string;
    expectedVersion: number;
    name: string;
    description: string;
    category: string;
    priceMinor: number;
    currencyCode: string;
  },
): Promise<Row | undefined> {
  const rows = await em.execute<Row[]>(
    `update products set name = ?, description = ?, category = ?, price_minor = ?, currency_code = ?,
       version = version + 1, updated_at = now()
     where id = ? and version = ? returning ${PRODUCT_COLUMNS}`,
    [u.name, u.description, u.category, u.priceMinor, u.currencyCode, u.productId, u.expectedVersion],
  );
  return rows[0];
}

export interface Move {
  movementId: string;
  productId: string;
  warehouseId: string;
  kind: MovementKind;
  quantity: number;
  reason: string;
  reference: string;
}

/**
 * Applies one movement to a stock row and writes its ledger row, in ONE statement. The WHERE clause
 * refuses a move that would take any column below zero; then no row changes and undefined is returned.
 * A `received` move creates the stock row of a new warehouse.
 */
export async function applyMove(
  em: EntityManager,
  m: Move,
): Promise<{ stock: StockLevel; movement: MovementView } | undefined> {
  const d = MOVEMENT_DELTAS[m.kind];
  const q = m.quantity;
  const deltas = [d.available * q, d.held * q, d.sold * q, d.received * q, d.writtenOff * q];
  const upsert =
    m.kind === "received"
      ? `insert into stock as st (product_id, warehouse_id, available, received) values (?, ?, ?, ?)
         on conflict (product_id, warehouse_id) do update set available = st.available + excluded.available,
           received = st.received + excluded.received, version = st.version + 1, updated_at = now()
         returning st.*`
      : `update stock set available = available + ?, held = held + ?, sold = sold + ?,
           received = received + ?, written_off = written_off + ?, version = version + 1, updated_at = now()
         where product_id = ? and warehouse_id = ?
           and available + ? >= 0 and held + ? >= 0 and sold + ? >= 0
         returning *`;
  const upsertParams =
    m.kind === "received"
      ? [m.productId, m.warehouseId, q, q]
      : [...deltas, m.productId, m.warehouseId, deltas[0], deltas[1], deltas[2]];
  const rows = await em.execute<Row[]>(
    `with s as (${upsert}),
     m as (
       insert into stock_movements (id, product_id, warehouse_id, kind, quantity,
         d_available, d_held, d_sold, d_received, d_written_off, reason, reference)
       select ?, product_id, warehouse_id, ?, ?, ?, ?, ?, ?, ?, ?, ? from s
       returning *
     )
     select s.available, s.held, s.sold, s.received, s.written_off, s.warehouse_id,
       m.id as m_id, m.product_id as m_product_id, m.kind as m_kind, m.quantity as m_quantity,
       m.d_available, m.d_held, m.d_sold, m.d_received, m.d_written_off, m.reason as m_reason,
       m.reference as m_reference, m.created_at as m_created_at
     from s, m`,
    [...upsertParams, m.movementId, m.kind, q, ...deltas, m.reason, m.reference],
  );
  const r = rows[0];
  if (!r) return undefined;
  return {
    stock: toStock(r),
    movement: toMovement({
      ...r,
      id: r.m_id,
      product_id: r.m_product_id,
      kind: r.m_kind,
      quantity: r.m_quantity,
      reason: r.m_reason,
      reference: r.m_reference,
      created_at: r.m_created_at,
    }),
  };
}

export async function stockRow(
  em: EntityManager,
  productId: string,
  warehouseId: string,
): Promise<StockLevel | undefined> {
  const rows = await em.execute<Row[]>("select * from stock where product_id = ? and warehouse_id = ?", [
    productId,
    warehouseId,
  ]);
  return rows[0] ? toStock(rows[0]) : undefined;
}

export async function listMovements(
  em: EntityManager,
  q: { productId: string; warehouseId: string; beforeId: string | null; limit: number },
): Promise<MovementView[]> {
  const where = ["product_id = ?"];
  const params: unknown[] = [q.productId];
  if (q.warehouseId) {
    where.push("warehouse_id = ?");
    params.push(q.warehouseId);
  }
  if (q.beforeId) {
    where.push("id < ?");
    params.push(q.beforeId);
  }
  const rows = await em.execute<Row[]>(
    `select * from stock_movements where ${where.join(" and ")} order by id desc limit ?`,
    [...params, q.limit],
  );
  return rows.map(toMovement);
}

/** What an order copies from its products when it is created: seller, sku, name and price. */
export interface PricedProduct {
  id: string;
  sellerId: string;
  sku: string;
  name: string;
  priceMinor: number;
  currencyCode: string;
}

/** The current prices of the given products on this shard (missing ids are left out). */
export async function pricesOf(em: EntityManager, productIds: string[]): Promise<Map<string, PricedProduct>> {
  const out = new Map<string, PricedProduct>();
  if (productIds.length === 0) return out;
  const rows = await em.execute<Row[]>(
    "select id, seller_id, sku, name, price_minor, currency_code from products where id in (?)",
    [productIds],
  );
  for (const r of rows)
    out.set(String(r.id), {
      id: String(r.id),
      sellerId: String(r.seller_id),
      sku: String(r.sku),
      name: String(r.name),
      priceMinor: Number(r.price_minor),
      currencyCode: String(r.currency_code),
    });
  return out;
}
