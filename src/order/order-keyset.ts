import { invalidArgument } from "../errors.js";
import type { ListOrdersQuery } from "./order.queries.js";

/**
 * The keyset of ListOrders: the sort key each listed row carries in page tokens, how a token's key
 * is checked, clamped to the listing's range and turned back into SQL, and the order the operator
 * scope merges shards' pages in.
 */

type Row = Record<string, unknown>;

/**
 * A listed row's sort key, as carried by page tokens: int64 columns as decimal strings (exact, and
 * `created_at` as epoch microseconds: a JS Date would drop the microseconds and skip or repeat rows
 * created in the same millisecond), then the id, which breaks every tie.
 */
export type SortKey = string[];

/** The keyset order of each sort: every column descending, `id` last. */
export const SORT_COLUMNS: Record<ListOrdersQuery["sort"], readonly ("total_minor" | "created_at" | "id")[]> =
  {
    newest: ["created_at", "id"],
    highest_total: ["total_minor", "created_at", "id"],
  };

const INT64 = /^-?\d{1,19}$/;
/** How a cursor value is turned back into the column's type, so the comparison stays index-friendly. */
export const CURSOR_PARAM = {
  total_minor: "?::bigint",
  created_at: "(timestamptz 'epoch' + ?::bigint * interval '1 microsecond')",
  id: "?",
} as const;

/** The sort key of a row of the list statement (its text columns `total_key`, `created_us`). */
export function sortKey(sort: ListOrdersQuery["sort"], r: Row): SortKey {
  const created = String(r.created_us);
  const id = String(r.id);
  return sort === "newest" ? [created, id] : [String(r.total_key), created, id];
}

/** Checks that a decoded token's key has the shape of the sort's key; a forged one is INVALID_ARGUMENT. */
export function cursorOf(sort: ListOrdersQuery["sort"], after: (string | number)[] | null): SortKey | null {
  if (after === null) return null;
  const columns = SORT_COLUMNS[sort];
  const valid =
    after.length === columns.length &&
    after.every((v, i) =>
      columns[i] === "id" ? typeof v === "string" && v !== "" : typeof v === "string" && INT64.test(v),
    );
  if (!valid) throw invalidArgument("page_token", "is not a valid page token");
  return after as SortKey;
}

/**
 * Page tokens are not signed: a forged cursor far before the listing's leading range (created range
 * for NEWEST, total range for HIGHEST_TOTAL) would make Postgres step through every index entry
 * between the cursor and the range. The server only issues keys of listed rows, which lie inside the
 * range, so clamping changes no honest page: a cursor that sorts before the whole range (newer than
 * created_before, a total above max_total_minor) gives the first page; one after its end (older than
 * created_after, a total below min_total_minor) gives an empty last page without asking any shard.
 */
export function clampCursor(q: ListOrdersQuery, after: SortKey | null): SortKey | null | "past the range" {
  if (after === null) return null;
  const lead = BigInt(after[0] as string);
  // The range of the leading sort column, both ends inclusive (created_before is exclusive).
  const [low, high] =
    q.sort === "newest"
      ? [micros(q.createdAfter), micros(q.createdBefore, -1n)]
      : [bigOrNull(q.minTotalMinor), bigOrNull(q.maxTotalMinor)];
  if (high !== null && lead > high) return null;
  if (low !== null && lead < low) return "past the range";
  return after;
}

const RFC3339_UTC = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?Z$/;

/**
 * Epoch microseconds (plus `shift`) of a created_after/created_before value; null, so no clamping,
 * when unset or not in the handler's format.
 */
function micros(time: string | null, shift = 0n): bigint | null {
  const m = time === null ? null : RFC3339_UTC.exec(time);
  const ms = m ? Date.parse(`${m[1]}Z`) : Number.NaN;
  if (!m || Number.isNaN(ms)) return null;
  return BigInt(ms) * 1000n + BigInt((m[2] ?? "").padEnd(6, "0")) + shift;
}

const bigOrNull = (n: number | null): bigint | null => (n === null ? null : BigInt(n));

/** Descending on every column: int64 columns compared as integers, the id as bytes (collate "C"). */
export function compareKeys(a: SortKey, b: SortKey): number {
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
export function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}
