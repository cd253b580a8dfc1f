import type { EntityManager } from "@mikro-orm/postgresql";
import type { ReservationStatus, ReservationView, ReservedItem } from "./reservation.model.js";

/** SQL of the reservation module: rows on the buyer's shard. */

type Row = Record<string, unknown>;
const COLUMNS = "id, user_id, status, expires_at, version, created_at, updated_at";

function toView(r: Row, items: ReservedItem[]): ReservationView {
  return {
    id: String(r.id),
    userId: String(r.user_id),
    status: r.status as ReservationStatus,
    items,
    expiresAt: new Date(r.expires_at as string),
    createdAt: new Date(r.created_at as string),
    updatedAt: new Date(r.updated_at as string),
    version: Number(r.version),
  };
}

/** Inserts a reservation and its items; expires_at is computed by the database clock. */
export async function insertReservation(
  tx: EntityManager,
  r: {
    id: string;
    bucket: number;
    userId: string;
    status: ReservationStatus;
    ttlSeconds: number;
    items: ReservedItem[];
  },
): Promise<void> {
  await tx.execute(
    `insert into reservations (id, bucket, user_id, status, expires_at)
     values (?, ?, ?, ?, now() + make_interval(secs => ?))`,
    [r.id, r.bucket, r.userId, r.status, r.ttlSeconds],
  );
  for (const item of r.items) {
    await tx.execute(
      "insert into reservation_items (reservation_id, product_id, warehouse_id, quantity) values (?, ?, ?, ?)",
      [r.id, item.productId, item.warehouseId, item.quantity],
    );
  }
}

/** Records the warehouses the holds were taken from. */
export async function setItemWarehouses(
  tx: EntityManager,
  reservationId: string,
  items: ReservedItem[],
): Promise<void> {
  for (const item of items) {
    await tx.execute(
      "update reservation_items set warehouse_id = ? where reservation_id = ? and product_id = ?",
      [item.warehouseId, reservationId, item.productId],
    );
  }
}

async function itemsOf(em: EntityManager, ids: string[]): Promise<Map<string, ReservedItem[]>> {
  const out = new Map<string, ReservedItem[]>();
  if (ids.length === 0) return out;
  const rows = await em.execute<Row[]>(
    "select reservation_id, product_id, warehouse_id, quantity from reservation_items where reservation_id in (?) order by reservation_id, product_id",
    [ids],
  );
  for (const r of rows) {
    const list = out.get(String(r.reservation_id)) ?? [];
    list.push({
      productId: String(r.product_id),
      warehouseId: String(r.warehouse_id),
      quantity: Number(r.quantity),
    });
    out.set(String(r.reservation_id), list);
  }
  return out;
}

/** One reservation with its items; `lock` takes the row lock (FOR UPDATE) in the caller's transaction. */
export async function findReservation(
  em: EntityManager,
  id: string,
  lock = false,
): Promise<ReservationView | undefined> {
  const rows = await em.execute<Row[]>(
    `select ${COLUMNS} from reservations where id = ?${lock ? " for update" : ""}`,
    [id],
  );
  const row = rows[0];
  if (!row) return undefined;
  return toView(row, (await itemsOf(em, [id])).get(id) ?? []);
}

/** The statuses that give a reservation's holds back: each owes a settlement (migration 0006). */
const GIVES_STOCK_BACK: ReadonlySet<ReservationStatus> = new Set(["released", "expired", "failed"]);

/**
 * Moves a reservation from one of `from` to `to`; returns false when it was in no such status.
 * Moving to RELEASED, EXPIRED or FAILED also records, in the caller's transaction, that its holds
 * are owed back (hold_settlements), due now or, for a saga that may still have a hold in flight,
 * `dueAfterCreatedS` seconds after the reservation was created (the end of its hold window).
 */
export async function transition(
  tx: EntityManager,
  id: string,
  from: ReservationStatus[],
  to: ReservationStatus,
  dueAfterCreatedS = 0,
): Promise<boolean> {
  const res = await tx.execute<{ affectedRows: number }>(
    "update reservations set status = ?, version = version + 1, updated_at = now() where id = ? and status in (?)",
    [to, id, from],
    "run",
  );
  if (res.affectedRows === 0) return false;
  if (GIVES_STOCK_BACK.has(to)) {
    await tx.execute(
      `insert into hold_settlements (reservation_id, due_at)
       select id, greatest(now(), created_at + make_interval(secs => ?)) from reservations where id = ?
       on conflict (reservation_id) do nothing`,
      [dueAfterCreatedS, id],
    );
  }
  return true;
}

/** A page of the reservations whose holds are owed back and due, in id order after `after`. */
export async function dueSettlements(em: EntityManager, after: string, limit: number): Promise<string[]> {
  const rows = await em.execute<Row[]>(
    `select reservation_id from hold_settlements where due_at <= now() and reservation_id > ?
     order by reservation_id limit ?`,
    [after, limit],
  );
  return rows.map((r) => String(r.reservation_id));
}

/** Forgets settlements whose holds are all given back; rows not yet due are kept. */
export async function settled(em: EntityManager, ids: string[]): Promise<void> {
  if (ids.length === 0) return;
  await em.execute("delete from hold_settlements where reservation_id in (?) and due_at <= now()", [ids]);
}

/** Activates a pending reservation, starting its TTL now; returns false when it is no longer pending. */
export async function activate(tx: EntityManager, id: string, ttlSeconds: number): Promise<boolean> {
  const res = await tx.execute<{ affectedRows: number }>(
    `update reservations set status = 'active', expires_at = now() + make_interval(secs => ?),
       version = version + 1, updated_at = now()
     where id = ? and status = 'pending'`,
    [ttlSeconds, id],
    "run",
  );
  return res.affectedRows > 0;
}

/** Extends an active, unexpired reservation; returns false otherwise. */
export async function extend(tx: EntityManager, id: string, ttlSeconds: number): Promise<boolean> {
  const res = await tx.execute<{ affectedRows: number }>(
    `update reservations set expires_at = now() + make_interval(secs => ?), version = version + 1, updated_at = now()
     where id = ? and status = 'active' and expires_at > now()`,
    [ttlSeconds, id],
    "run",
  );
  return res.affectedRows > 0;
}

/** True when an active reservation's TTL has passed by the database clock. */
export async function isPastExpiry(em: EntityManager, id: string): Promise<boolean> {
  const rows = await em.execute<Row[]>("select expires_at <= now() as past from reservations where id = ?", [
    id,
  ]);
  return rows[0]?.past === true;
}

export async function listReservations(
  em: EntityManager,
  q: { userId: string; statuses: ReservationStatus[]; beforeId: string | null; limit: number },
): Promise<ReservationView[]> {
  const where = ["user_id = ?"];
  const params: unknown[] = [q.userId];
  if (q.statuses.length > 0) {
    where.push("status in (?)");
    params.push(q.statuses);
  }
  if (q.beforeId) {
    where.push("id < ?");
    params.push(q.beforeId);
  }
  const rows = await em.execute<Row[]>(
    `select ${COLUMNS} from reservations where ${where.join(" and ")} order by id desc limit ?`,
    [...params, q.limit],
  );
  const items = await itemsOf(
    em,
    rows.map((r) => String(r.id)),
  );
  return rows.map((r) => toView(r, items.get(String(r.id)) ?? []));
}

/** A batch of ids to sweep, locked with SKIP LOCKED so concurrent sweepers never take the same rows. */
export async function lockSweepBatch(
  tx: EntityManager,
  kind: "expired" | "stale_pending",
  boundSeconds: number,
  limit: number,
): Promise<string[]> {
  const rows = await tx.execute<Row[]>(
    kind === "expired"
      ? `select id from reservations where status = 'active' and expires_at <= now()
         order by expires_at limit ? for update skip locked`
      : `select id from reservations where status = 'pending' and created_at < now() - make_interval(secs => ?)
         order by created_at limit ? for update skip locked`,
    kind === "expired" ? [limit] : [boundSeconds, limit],
  );
  return rows.map((r) => String(r.id));
}

/** Statuses of the given reservations (for the orphan-hold check); missing ids are absent. */
export async function statusesOf(em: EntityManager, ids: string[]): Promise<Map<string, ReservationStatus>> {
  if (ids.length === 0) return new Map();
  const rows = await em.execute<Row[]>("select id, status from reservations where id in (?)", [ids]);
  return new Map(rows.map((r) => [String(r.id), r.status as ReservationStatus]));
}
