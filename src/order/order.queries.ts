import { isDomainError } from "../errors.js";
import { decodePageToken, encodePageToken, listingHash, mergePages } from "../shard/page-token.js";
import { type Shard, type ShardSet, shardUnavailable } from "../shard/shards.js";
import type { OrderStatus, OrderView } from "./order.model.js";
import { COLUMNS, toListedView } from "./order.repository.js";
import {
  CURSOR_PARAM,
  clampCursor,
  compareBytes,
  compareKeys,
  cursorOf,
  SORT_COLUMNS,
  type SortKey,
  sortKey,
} from "./order-keyset.js";

/**
 * The read side of orders that spans many rows: ListOrders (keyset pages, one shard or all merged)
 * and ListTopCustomers (one aggregate per shard, merged). Only top-level orders are ever listed
 * (`parent_order_id is null`, which is also the predicate of every list index of 0003 and 0005).
 */

export interface ListOrdersQuery {
  /** null = operator scope, every shard. */
  userId: string | null;
  /** RFC 3339 times with microseconds (the database's precision), exact: e.g. 2026-11-23T10:00:00.000123Z. */
  createdAfter: string | null;
  createdBefore: string | null;
  /** Empty = all. */
  statuses: OrderStatus[];
  minTotalMinor: number | null;
  maxTotalMinor: number | null;
  /** '' = no filter. */
  customerEmail: string;
  includeArchived: boolean;
  sort: "newest" | "highest_total";
  /** Already validated 1..100. */
  pageSize: number;
  pageToken: string;
}

export interface TopCustomer {
  userId: string;
  paidTotalMinor: number;
  orderCount: number;
}

type Row = Record<string, unknown>;

/**
 * The ONE statement a page sends to a shard (exported so the EXPLAIN test checks the exact SQL that
 * runs): the keyset query picks `limit` orders strictly after `after` in the sort's order, walking
 * the index made for the scope, sort and filters (docs/data-model.md); each picked order then brings
 * its children's ids, its lines and its payments as aggregates of lateral subqueries, each an index
 * lookup by order id. One round trip and one row per order, where loading by id took four statements
 * and a row per line and per payment.
 *
 * Filter values go into the SQL as literals (MikroORM formats the statement before sending it): the
 * planner proves a partial index's predicate from them, e.g. that `status in ('pending')` implies the
 * open-status predicate of orders_open_newest_idx (0005).
 */
export function listOrdersStatement(
  q: ListOrdersQuery,
  after: SortKey | null,
  limit: number,
): { sql: string; params: unknown[] } {
  const where = ["parent_order_id is null"];
  const params: unknown[] = [];
  const add = (clause: string, ...values: unknown[]) => {
    where.push(clause);
    params.push(...values);
  };
  if (q.userId !== null) add("user_id = ?", q.userId);
  if (q.customerEmail !== "") add("customer_email = ?", q.customerEmail);
  if (!q.includeArchived) add("not archived");
  if (q.createdAfter) add("created_at >= ?::timestamptz", q.createdAfter);
  if (q.createdBefore) add("created_at < ?::timestamptz", q.createdBefore);
  if (q.statuses.length > 0) add("status in (?)", [...new Set(q.statuses)]);
  if (q.minTotalMinor !== null) add("total_minor >= ?", q.minTotalMinor);
  if (q.maxTotalMinor !== null) add("total_minor <= ?", q.maxTotalMinor);
  const columns = SORT_COLUMNS[q.sort];
  // (total_minor, created_at, id) < (…): one row comparison, which Postgres turns into an index
  // bound on the matching all-descending index, so the next page starts at the cursor.
  if (after) add(`(${columns.join(", ")}) < (${columns.map((c) => CURSOR_PARAM[c]).join(", ")})`, ...after);
  const order = (alias: string) => columns.map((c) => `${alias}${c} desc`).join(", ");
  // A parent's lines are its children's (in child id order, then product), never its own; the keys
  // come back as text (exact int64) under names that shadow no column.
  const sql = `select o.*, o.total_minor::text as total_key,
      (extract(epoch from o.created_at) * 1000000)::bigint::text as created_us,
      ch.ids as child_ids, it.items, pay.payments
    from (select ${COLUMNS} from orders where ${where.join(" and ")} order by ${order("")} limit ?) o
    left join lateral (select array_agg(c.id order by c.id) as ids from orders c
      where o.stock_status = 'none' and c.parent_order_id = o.id) ch on true
    left join lateral (select json_agg(i order by i.order_id, i.product_id) as items from order_items i
      where i.order_id = any (case when o.stock_status = 'none' then ch.ids else array[o.id] end)) it on true
    left join lateral (select json_agg(p order by p.id) as payments from order_payments p
      where p.order_id = o.id) pay on true
    order by ${order("o.")}`;
  return { sql, params: [...params, limit] };
}

/** One page of full top-level orders in the requested global order. */
export async function listOrders(
  shards: ShardSet,
  q: ListOrdersQuery,
): Promise<{ orders: OrderView[]; nextPageToken: string }> {
  const listing = listingHash({
    userId: q.userId,
    createdAfter: q.createdAfter,
    createdBefore: q.createdBefore,
    statuses: [...new Set(q.statuses)].sort(),
    minTotalMinor: q.minTotalMinor,
    maxTotalMinor: q.maxTotalMinor,
    customerEmail: q.customerEmail,
    includeArchived: q.includeArchived,
    sort: q.sort,
  });
  const after = clampCursor(q, cursorOf(q.sort, decodePageToken(q.pageToken, listing)?.after ?? null));
  if (after === "past the range") return { orders: [], nextPageToken: "" };
  const { sql, params } = listOrdersStatement(q, after, q.pageSize + 1);
  const select = async (shard: Shard): Promise<Listed[]> =>
    (await send<Row>(shard, sql, params)).map((row) => ({ key: sortKey(q.sort, row), row }));
  // One user's orders all live on that user's shard; the operator's list asks every shard for the
  // same page after the same cursor and merges: the order is total (id breaks ties), so the first
  // pageSize of the merged rows are exactly the global page.
  const pages =
    q.userId !== null ? [await select(shards.forUser(q.userId))] : await onEveryShard(shards, select);
  const { rows, more } = mergePages(pages, (a, b) => compareKeys(a.key, b.key), q.pageSize);
  const last = rows.at(-1);
  return {
    // Only the kept rows become views: in operator scope the other shards' extra rows are dropped.
    orders: rows.map((r) => toListedView(r.row)),
    nextPageToken: more && last ? encodePageToken({ after: last.key }, listing) : "",
  };
}

interface Listed {
  key: SortKey;
  row: Row;
}

/**
 * One shard's ranking (params: currency code, limit). The predicate repeats the partial index's
 * (orders_top_customers_idx), so Postgres answers from the index alone, grouped by user_id in order.
 */
export const TOP_CUSTOMERS_SQL = `select user_id, sum(paid_minor - refunded_minor)::text as paid_total_minor,
    count(*)::text as order_count
  from orders
  where parent_order_id is null and not archived and paid_minor > 0 and currency_code = ?
  group by user_id
  order by sum(paid_minor - refunded_minor) desc, user_id collate "C" asc
  limit ?`;

/**
 * The customers with the highest paid totals (paid less refunded) over paid, non-archived,
 * top-level orders in one currency; ties by user id. One aggregate statement per shard.
 */
export async function topCustomers(
  shards: ShardSet,
  limit: number,
  currencyCode: string,
): Promise<TopCustomer[]> {
  // A user's orders all live on the user's shard, so each shard's sums are final and the global top
  // `limit` is within the union of every shard's top `limit`.
  const pages = await onEveryShard(shards, (shard) =>
    send<Row>(shard, TOP_CUSTOMERS_SQL, [currencyCode, limit]),
  );
  const rows = pages.flat().map((r) => ({
    userId: String(r.user_id),
    paid: BigInt(String(r.paid_total_minor)),
    count: Number(r.order_count),
  }));
  rows.sort((a, b) => (a.paid !== b.paid ? (a.paid > b.paid ? -1 : 1) : compareBytes(a.userId, b.userId)));
  return rows
    .slice(0, limit)
    .map((r) => ({ userId: r.userId, paidTotalMinor: Number(r.paid), orderCount: r.count }));
}

/**
 * Runs `run` on every shard at once and waits for all of them. Any shard failing fails the whole
 * call with UNAVAILABLE naming that shard: a merged answer without one shard would be silently wrong.
 */
async function onEveryShard<T>(shards: ShardSet, run: (shard: Shard) => Promise<T>): Promise<T[]> {
  const settled = await Promise.allSettled(shards.shards.map((shard) => run(shard)));
  return settled.map((result, i) => {
    if (result.status === "fulfilled") return result.value;
    if (isDomainError(result.reason)) throw result.reason;
    throw shardUnavailable(shards.shards[i]?.index ?? i, result.reason);
  });
}

/**
 * Sends one read statement written with MikroORM's `?` placeholders to the shard's pool: formatted
 * with its values as literals exactly as em.execute formats them (so the planner proves partial
 * indexes from them, and the EXPLAIN tests see the statement that runs), without forking an
 * EntityManager for it. A list page is one statement outside any transaction, and the fork (its
 * unit of work's maps and sets) was a large share of what each call left to outlive a minor GC
 * (bench:server-ab against the fork: 0.91-0.95x the server CPU per call).
 */
function send<T>(shard: Shard, sql: string, params: readonly unknown[]): Promise<T[]> {
  return shard.sql<T>(shard.orm.em.getPlatform().formatQuery(sql, [...params]), []);
}
