import { createHash } from "node:crypto";
import { invalidArgument } from "../errors.js";

/**
 * Opaque keyset page tokens. A token carries the sort key of the last row served and a hash of the
 * filters and sort it was issued for; the next page continues strictly after that key, so rows
 * inserted between pages are neither skipped nor repeated (they appear if they sort after the key).
 */
export interface PageToken {
  /** The last row's sort key, e.g. [price, id] or [id]. */
  after: (string | number)[];
}

/** Hashes the filters and sort of a listing, to bind tokens to them. */
export function listingHash(listing: unknown): string {
  return createHash("sha256").update(JSON.stringify(listing)).digest("base64url").slice(0, 16);
}

export function encodePageToken(token: PageToken, listing: string): string {
  return Buffer.from(JSON.stringify({ v: 1, l: listing, a: token.after })).toString("base64url");
}

/** Decodes a token; empty means the first page. Anything malformed or issued for another listing is INVALID_ARGUMENT. */
export function decodePageToken(value: string, listing: string, field = "page_token"): PageToken | null {
  if (value === "") return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(value, "base64url").toString("utf8"));
  } catch {
    throw invalidArgument(field, "is not a valid page token");
  }
  const p = parsed as { v?: unknown; l?: unknown; a?: unknown };
  if (
    p?.v !== 1 ||
    typeof p.l !== "string" ||
    !Array.isArray(p.a) ||
    !p.a.every((x) => typeof x === "string" || typeof x === "number")
  ) {
    throw invalidArgument(field, "is not a valid page token");
  }
  if (p.l !== listing) throw invalidArgument(field, "was issued for other filters or another sort");
  return { after: p.a as (string | number)[] };
}

/**
 * Merges per-shard pages (each already sorted by `compare`) into one page of `limit` rows, and says
 * whether more rows exist anywhere. Each shard must have been asked for limit + 1 rows.
 */
export function mergePages<T>(
  pages: T[][],
  compare: (a: T, b: T) => number,
  limit: number,
): { rows: T[]; more: boolean } {
  const all = pages.flat().sort(compare);
  return { rows: all.slice(0, limit), more: all.length > limit };
}

/**
 * Turns the `pageSize + 1` rows a keyset query returned into a page: the first pageSize rows, and a
 * token after the last of them when the extra row shows more exist.
 */
export function keysetPage<T>(
  rows: T[],
  pageSize: number,
  keyOf: (row: T) => (string | number)[],
  listing: string,
): { items: T[]; nextPageToken: string } {
  const items = rows.slice(0, pageSize);
  const last = items.at(-1);
  const more = rows.length > pageSize && last !== undefined;
  return { items, nextPageToken: more ? encodePageToken({ after: keyOf(last) }, listing) : "" };
}
