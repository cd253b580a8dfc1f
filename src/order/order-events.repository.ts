import type { EntityManager } from "@mikro-orm/postgresql";
import type { EventKind, OrderEventView, OrderStatus } from "./order.model.js";

/**
 * The order history (order_events) on the buyer's shard: appended in the same transaction as the
 * change it records, read back by GetOrderHistory and by the watch streams' replay.
 */

type Row = Record<string, unknown>;
const COLUMNS = "user_id, seq, order_id, version, kind, from_status, to_status, reason, actor, created_at";

export function toEvent(r: Row): OrderEventView {
  return {
    userId: String(r.user_id),
    seq: Number(r.seq),
    orderId: String(r.order_id),
    version: Number(r.version),
    kind: r.kind as EventKind,
    fromStatus: r.from_status as OrderStatus | "",
    toStatus: r.to_status as OrderStatus,
    reason: String(r.reason),
    actor: String(r.actor),
    createdAt: new Date(r.created_at as string),
  };
}

export interface NewEvent {
  userId: string;
  orderId: string;
  /** The order's version after the change. */
  version: number;
  kind: EventKind;
  fromStatus: OrderStatus | "";
  toStatus: OrderStatus;
  reason: string;
  actor: string;
}

/**
 * Appends one event inside the caller's transaction. The user's order_streams row is bumped first:
 * its row lock is held until commit, so a user's events commit in seq order (no later seq can become
 * visible before an earlier one), which is what lets WatchOrders resume after a seq without a gap.
 */
export async function appendEvent(tx: EntityManager, e: NewEvent): Promise<OrderEventView> {
  const rows = await tx.execute<Row[]>(
    `with s as (
       insert into order_streams (user_id, last_seq) values (?, 1)
       on conflict (user_id) do update set last_seq = order_streams.last_seq + 1
       returning last_seq
     )
     insert into order_events (user_id, seq, order_id, version, kind, from_status, to_status, reason, actor)
     select ?, s.last_seq, ?, ?, ?, ?, ?, ?, ? from s
     returning ${COLUMNS}`,
    [e.userId, e.userId, e.orderId, e.version, e.kind, e.fromStatus, e.toStatus, e.reason, e.actor],
  );
  return toEvent(rows[0] as Row);
}

/** One order's events with version > afterVersion, oldest first. */
export async function eventsOfOrder(
  em: EntityManager,
  orderId: string,
  afterVersion = 0,
  limit = 1000,
): Promise<OrderEventView[]> {
  const rows = await em.execute<Row[]>(
    `select ${COLUMNS} from order_events where order_id = ? and version > ? order by version limit ?`,
    [orderId, afterVersion, limit],
  );
  return rows.map(toEvent);
}

/** One user's events with seq > afterSeq, in commit order. */
export async function eventsOfUser(
  em: EntityManager,
  userId: string,
  afterSeq: number,
  limit = 1000,
): Promise<OrderEventView[]> {
  const rows = await em.execute<Row[]>(
    `select ${COLUMNS} from order_events where user_id = ? and seq > ? order by seq limit ?`,
    [userId, afterSeq, limit],
  );
  return rows.map(toEvent);
}

/** The last seq of each user's event stream (0 for a user with no events yet). */
export async function lastSeqs(em: EntityManager, userIds: string[]): Promise<Map<string, number>> {
  const out = new Map<string, number>(userIds.map((u) => [u, 0]));
  if (userIds.length === 0) return out;
  const rows = await em.execute<Row[]>("select user_id, last_seq from order_streams where user_id in (?)", [
    userIds,
  ]);
  for (const r of rows) out.set(String(r.user_id), Number(r.last_seq));
  return out;
}

/** The current version of each order (absent ids are left out). */
export async function currentVersions(em: EntityManager, orderIds: string[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  if (orderIds.length === 0) return out;
  const rows = await em.execute<Row[]>("select id, version from orders where id in (?)", [orderIds]);
  for (const r of rows) out.set(String(r.id), Number(r.version));
  return out;
}
