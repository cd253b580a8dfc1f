import type { EntityManager } from "@mikro-orm/postgresql";
import { invalidArgument, isDomainError } from "../errors.js";
import { decodePageToken, encodePageToken, listingHash, mergePages } from "../shard/page-token.js";
import { type ShardSet, shardUnavailable } from "../shard/shards.js";
import type { OrderStatus } from "./order.model.js";

/**
 * The read side of orders that spans many rows: ListOrders (keyset pages, one shard or all merged)
 * and ListTopCustomers (one aggregate per shard, merged). Only top-level orders are ever listed
 * (`parent_order_id is null`, which is also the predicate of every list index in 0003).
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
 * A listed row's sort key, as carried by page tokens: int64 columns as decimal strings (exact, and
 * `created_at` as epoch microseconds: a JS Date would drop the microseconds and skip or repeat rows
 * created in the same millisecond), then the id, which breaks every tie.
 */
type SortKey = string[];

/** The keyset order of each sort: every column descending, `id` last. */
const ORDER_COLUMNS: Record<ListOrdersQuery["sort"], readonly ("total_minor" | "created_at" | "id")[]> = {
  newest: ["created_at", "id"],
  highest_total: ["total_minor", "created_at", "id"],
};

const INT64 = /^-?\d{1,19}$/;
/** How a cursor value is turned back into the column's type, so the comparison stays index-friendly. */
const CURSOR_PARAM = {
  total_minor: "?::bigint",
  created_at: "(timestamptz 'epoch' + ?::bigint * interval '1 microsecond')",
  id: "?",
} as const;

/**
 * The one statement listOrderIds sends to a shard: rows strictly after `after` in the sort's keyset
 * order, `limit` of them. Exported so the EXPLAIN test checks the exact SQL that runs.
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
  const columns = ORDER_COLUMNS[q.sort];
  // (total_minor, created_at, id) < (…): one row comparison, which Postgres turns into an index
  // bound on the matching all-descending index, so the next page starts at the cursor.
  if (after) add(`(${columns.join(", ")}) < (${columns.map((c) => CURSOR_PARAM[c]).join(", ")})`, ...after);
  // The keys come back as text (exact int64) under other names: ORDER BY would sort by an output
  // column that shadowed total_minor, as text and without the index.
  const sql = `select id, total_minor::text as total_key,
      (extract(epoch from created_at) * 1000000)::bigint::text as created_us
    from orders where ${where.join(" and ")}
    order by ${columns.map((c) => `${c} desc`).join(", ")} limit ?`;
  return { sql, params: [...params, limit] };
}

/** One page of top-level order ids in the requested global order (ids route to their shard by bucket). */
export async function listOrderIds(
  shards: ShardSet,
  q: ListOrdersQuery,
): Promise<{ ids: string[]; nextPageToken: string }> {
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
  const after = cursorOf(q.sort, decodePageToken(q.pageToken, listing)?.after ?? null);
  const { sql, params } = listOrdersStatement(q, after, q.pageSize + 1);
  const select = async (em: EntityManager): Promise<SortKey[]> =>
    (await em.execute<Row[]>(sql, params)).map((r) => sortKey(q.sort, r));
  // One user's orders all live on that user's shard; the operator's list asks every shard for the
  // same page after the same cursor and merges: the order is total (id breaks ties), so the first
  // pageSize of the merged rows are exactly the global page.
  const pages =
    q.userId !== null ? [await select(shards.forUser(q.userId).fork())] : await onEveryShard(shards, select);
  const { rows, more } = mergePages(pages, compareKeys, q.pageSize);
  const last = rows.at(-1);
  return {
    ids: rows.map((key) => key.at(-1) as string),
    nextPageToken: more && last ? encodePageToken({ after: last }, listing) : "",
  };
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
  const pages = await onEveryShard(shards, (em) =>
    em.execute<Row[]>(TOP_CUSTOMERS_SQL, [currencyCode, limit]),
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
async function onEveryShard<T>(shards: ShardSet, run: (em: EntityManager) => Promise<T>): Promise<T[]> {
  const settled = await Promise.allSettled(shards.shards.map((shard) => run(shard.fork())));
  return settled.map((result, i) => {
    if (result.status === "fulfilled") return result.value;
    if (isDomainError(result.reason)) throw result.reason;
    throw shardUnavailable(shards.shards[i]?.index ?? i, result.reason);
  });
}

function sortKey(sort: ListOrdersQuery["sort"], r: Row): SortKey {
  const created = String(r.created_us);
  const id = String(r.id);
  return sort === "newest" ? [created, id] : [String(r.total_key), created, id];
}

/** Checks that a decoded token's key has the shape of the sort's key; a forged one is INVALID_ARGUMENT. */
function cursorOf(sort: ListOrdersQuery["sort"], after: (string | number)[] | null): SortKey | null {
  if (after === null) return null;
  const columns = ORDER_COLUMNS[sort];
  const valid =
    after.length === columns.length &&
    after.every((v, i) =>
      columns[i] === "id" ? typeof v === "string" && v !== "" : typeof v === "string" && INT64.test(v),
    );
  if (!valid) throw invalidArgument("page_token", "is not a valid page token");
  return after as SortKey;
}

/** Descending on every column: int64 columns compared as integers, the id as bytes (collate "C"). */
function compareKeys(a: SortKey, b: SortKey): number {
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as string;
    const y = b[i] as string;
    if (x === y) continue;
    const last = i === a.length - 1;
    const c = last ? compareBytes(x, y) : BigInt(x) < BigInt(y) ? -1 : 1;
    return -c;
  }
  return 0;
}

/** Compares as Postgres' "C" collation does: by UTF-8 bytes. */
function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}
