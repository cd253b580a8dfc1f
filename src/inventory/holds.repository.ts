import type { EntityManager } from "@mikro-orm/postgresql";
import { DomainError } from "../errors.js";
import { firstIdAt, newId, parseId } from "../shard/ids.js";
import { applyMove } from "./inventory.repository.js";

/**
 * The hold ledger: stock held for reservations, on the stock's (seller's) shard. Holds are taken by
 * the functions of migration 0004 (shop_reserve, shop_hold: one statement each); the hold's primary
 * key (reservation, product) makes a repeated step unable to take stock twice. Here: moving holds
 * on (released, sold, returned) and the refusal error.
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

/**
 * One page of the reservations with live holds on this shard taken before `olderThanSeconds` ago
 * (database clock), in id order after `after` (keyset paging along the primary key). Reservation ids
 * sort by creation time, so the walk also stops at the first id made `olderThanSeconds` ago (this
 * process's clock): the newest holds, which cannot qualify yet, are never read.
 */
export async function reservationsWithOldHolds(
  em: EntityManager,
  olderThanSeconds: number,
  after: string,
  limit: number,
): Promise<string[]> {
  const before = firstIdAt("res", Date.now() - olderThanSeconds * 1000);
  const rows = await em.execute<Row[]>(
    `select distinct reservation_id from stock_holds
     where status = 'held' and created_at < now() - make_interval(secs => ?)
       and reservation_id > ? and reservation_id < ?
     order by reservation_id limit ?`,
    [olderThanSeconds, after, before, limit],
  );
  return rows.map((r) => String(r.reservation_id));
}
