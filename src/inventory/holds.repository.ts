import type { EntityManager } from "@mikro-orm/postgresql";
import { DomainError } from "../errors.js";
import { newId, parseId } from "../shard/ids.js";
import { applyMove } from "./inventory.repository.js";

/**
 * The hold ledger: stock held for reservations, on the stock's (seller's) shard. A hold is taken by
 * ONE statement that decrements `available`, raises `held` and inserts the hold row; the hold's
 * primary key (reservation, product) makes a repeated step fail instead of taking stock twice.
 */

export interface HoldRequest {
  productId: string;
  /** Empty: any warehouse that has the whole quantity (the one with the most available). */
  warehouseId: string;
  quantity: number;
}

export interface Hold {
  productId: string;
  warehouseId: string;
  quantity: number;
}

export interface ShortItem {
  productId: string;
  warehouseId: string;
  requested: number;
  available: number;
}

type Row = Record<string, unknown>;

/**
 * Takes a hold for every item not yet held by this reservation, inside the caller's transaction.
 * All or nothing: if any item is short, throws insufficient_stock naming every short item (the
 * caller's transaction rolls back, so nothing stays held). Already-held items are returned as they
 * are, which makes the step safe to repeat.
 */
export async function takeHolds(
  tx: EntityManager,
  reservationId: string,
  items: HoldRequest[],
  bucket: number,
): Promise<Hold[]> {
  const existing = await tx.execute<Row[]>(
    "select product_id, warehouse_id, quantity, status from stock_holds where reservation_id = ?",
    [reservationId],
  );
  const held = new Map(existing.map((r) => [String(r.product_id), r]));
  const holds: Hold[] = [];
  const short: ShortItem[] = [];
  for (const item of items) {
    const prior = held.get(item.productId);
    if (prior) {
      if (prior.status !== "held")
        throw new DomainError("reservation_expired", "the reservation's holds were already released");
      holds.push({
        productId: item.productId,
        warehouseId: String(prior.warehouse_id),
        quantity: Number(prior.quantity),
      });
      continue;
    }
    const rows = await tx.execute<Row[]>(
      `with s as (
         update stock set available = available - ?, held = held + ?, version = version + 1, updated_at = now()
         where product_id = ? and available >= ? and warehouse_id = coalesce(nullif(?, ''),
           (select warehouse_id from stock where product_id = ? and available >= ?
            order by available desc, warehouse_id limit 1))
         returning product_id, warehouse_id
       ), h as (
         insert into stock_holds (reservation_id, product_id, warehouse_id, quantity, status)
         select ?, product_id, warehouse_id, ?, 'held' from s returning warehouse_id
       ), m as (
         insert into stock_movements (id, product_id, warehouse_id, kind, quantity,
           d_available, d_held, d_sold, d_received, d_written_off, reason, reference)
         select ?, product_id, warehouse_id, 'held', ?, ?, ?, 0, 0, 0, 'reservation', ? from s
       )
       select warehouse_id from h`,
      [
        item.quantity,
        item.quantity,
        item.productId,
        item.quantity,
        item.warehouseId,
        item.productId,
        item.quantity,
        reservationId,
        item.quantity,
        newId("mov", bucket),
        item.quantity,
        -item.quantity,
        item.quantity,
        reservationId,
      ],
    );
    const row = rows[0];
    if (row)
      holds.push({
        productId: item.productId,
        warehouseId: String(row.warehouse_id),
        quantity: item.quantity,
      });
    else short.push(await shortfall(tx, item));
  }
  if (short.length > 0) throw insufficientStock(short);
  return holds;
}

/** The refusal of a reservation: every short item named, in the message and as details. */
export function insufficientStock(short: ShortItem[]): DomainError {
  const names = short
    .map((s) => `${s.productId} (asked ${s.requested}, available ${s.available})`)
    .join(", ");
  return new DomainError("insufficient_stock", `not enough stock for ${names}`, {
    field: "items",
    details: short,
  });
}

/** What a refused item lacks: the most any one warehouse (or the pinned one) has available now. */
export async function shortfall(tx: EntityManager, item: HoldRequest): Promise<ShortItem> {
  const rows = await tx.execute<Row[]>(
    item.warehouseId
      ? "select coalesce(max(available), 0) as available from stock where product_id = ? and warehouse_id = ?"
      : "select coalesce(max(available), 0) as available from stock where product_id = ?",
    item.warehouseId ? [item.productId, item.warehouseId] : [item.productId],
  );
  return {
    productId: item.productId,
    warehouseId: item.warehouseId,
    requested: item.quantity,
    available: Number(rows[0]?.available ?? 0),
  };
}

/**
 * Moves every live hold of a reservation on this shard to `to` ("released": the stock goes back to
 * available; "sold": it becomes sold), each with its ledger row. Idempotent: holds already moved
 * are left alone. Returns how many holds moved.
 */
export async function settleHolds(
  tx: EntityManager,
  reservationId: string,
  to: "released" | "sold",
  productIds?: string[],
): Promise<number> {
  const only = productIds ? " and product_id in (?)" : "";
  if (productIds?.length === 0) return 0;
  const live = await tx.execute<Row[]>(
    `update stock_holds set status = ?, updated_at = now()
     where reservation_id = ? and status = 'held'${only}
     returning product_id, warehouse_id, quantity`,
    productIds ? [to, reservationId, productIds] : [to, reservationId],
  );
  for (const h of live) {
    const moved = await applyMove(tx, {
      movementId: newId("mov", parseId(String(h.product_id), "prd", "product_id").bucket),
      productId: String(h.product_id),
      warehouseId: String(h.warehouse_id),
      kind: to,
      quantity: Number(h.quantity),
      reason: to === "released" ? "reservation released" : "order confirmed",
      reference: reservationId,
    });
    // The hold row and the held column move together; a mismatch means the ledger is corrupt.
    if (!moved) throw new Error(`held stock missing for hold ${reservationId}/${String(h.product_id)}`);
  }
  return live.length;
}

/**
 * Gives back the stock of a cancelled order's lines on this shard: holds still held are released,
 * holds already sold are returned (sold -> available), each with its ledger row. Idempotent per
 * hold: a hold moves at most once to `released` or `returned`. Returns how many holds moved.
 */
export async function returnOrderStock(
  tx: EntityManager,
  reservationId: string,
  productIds: string[],
): Promise<number> {
  if (productIds.length === 0) return 0;
  const released = await settleHolds(tx, reservationId, "released", productIds);
  const sold = await tx.execute<Row[]>(
    `update stock_holds set status = 'returned', updated_at = now()
     where reservation_id = ? and status = 'sold' and product_id in (?)
     returning product_id, warehouse_id, quantity`,
    [reservationId, productIds],
  );
  for (const h of sold) {
    const moved = await applyMove(tx, {
      movementId: newId("mov", parseId(String(h.product_id), "prd", "product_id").bucket),
      productId: String(h.product_id),
      warehouseId: String(h.warehouse_id),
      kind: "returned",
      quantity: Number(h.quantity),
      reason: "order cancelled",
      reference: reservationId,
    });
    if (!moved) throw new Error(`sold stock missing for hold ${reservationId}/${String(h.product_id)}`);
  }
  return released + sold.length;
}

/** Reservations with live holds on this shard taken before `olderThanSeconds` ago (database clock). */
export async function reservationsWithOldHolds(
  em: EntityManager,
  olderThanSeconds: number,
  limit: number,
): Promise<string[]> {
  const rows = await em.execute<Row[]>(
    `select distinct reservation_id from stock_holds
     where status = 'held' and created_at < now() - make_interval(secs => ?) limit ?`,
    [olderThanSeconds, limit],
  );
  return rows.map((r) => String(r.reservation_id));
}
