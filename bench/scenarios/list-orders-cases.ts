/**
 * The ListOrders cases of scenario 5: every filter of ListOrdersRequest (created range, statuses,
 * total range, include_archived, customer_email) under both sorts, in each scope that makes sense
 * (a heavy and a typical buyer's own list; the operator's list of every user, and by email), first
 * page and deep pages. Each case turns into the gRPC request the client sends and into the
 * ListOrdersQuery whose statement (listOrdersStatement) is EXPLAINed.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  type ListOrdersRequest,
  ListOrdersRequestSchema,
  OrderSort,
} from "../../gen/shop/order/v1/order_pb.js";
import { STATUS } from "../../src/order/order.messages.js";
import type { OrderStatus } from "../../src/order/order.model.js";
import type { ListOrdersQuery } from "../../src/order/order.queries.js";
import { encodePageToken } from "../../src/shard/page-token.js";
import { token, userToken } from "../../test/harness/auth.js";
import type { SeededBuyer } from "../lib/seed-orders.js";

export type Scope =
  | "heavy buyer"
  | "typical buyer"
  | "operator"
  | "operator, heavy email"
  | "operator, typical email";
export type Sort = ListOrdersQuery["sort"];
export const PAGE_SIZE = 20;

export interface Filter {
  name: string;
  createdAfterMs?: number;
  createdBeforeMs?: number;
  statuses?: OrderStatus[];
  minTotalMinor?: number;
  maxTotalMinor?: number;
  includeArchived?: boolean;
}

export interface Case {
  scope: Scope;
  filter: Filter;
  sort: Sort;
  /** first: no token; deep: tokens after random orders of the listing, anywhere in it. */
  page: "first" | "deep";
  userId: string | null;
  email: string;
}

const DAY_MS = 86_400_000;

/** The filters, relative to the newest seeded order; `rare` ones match about 1% or less of the orders. */
export function filters(newestMs: number): Filter[] {
  const ago = (days: number) => Math.floor((newestMs - days * DAY_MS) / 1000) * 1000;
  return [
    { name: "none (archived hidden)" },
    { name: "include_archived", includeArchived: true },
    { name: "created: last 30 days", createdAfterMs: ago(30) },
    { name: "created: one week a year ago", createdAfterMs: ago(365), createdBeforeMs: ago(358) },
    { name: "status PENDING (rare)", statuses: ["pending"] },
    { name: "status CANCELLED", statuses: ["cancelled"] },
    { name: "status PROCESSING|SHIPPED", statuses: ["processing", "shipped"] },
    { name: "total 100.00-500.00", minTotalMinor: 10_000, maxTotalMinor: 50_000 },
    { name: "total >= 2000.00 (rare)", minTotalMinor: 200_000 },
    {
      name: "last 90 days + DELIVERED + total >= 50.00",
      createdAfterMs: ago(90),
      statuses: ["delivered"],
      minTotalMinor: 5_000,
    },
  ];
}

/** Every case: scopes x filters x sorts x pages (typical customers have about one page: first only). */
export function cases(newestMs: number, heavy: SeededBuyer, typical: SeededBuyer): Case[] {
  const scopes: { scope: Scope; userId: string | null; email: string; deep: boolean }[] = [
    { scope: "heavy buyer", userId: heavy.userId, email: "", deep: true },
    { scope: "typical buyer", userId: typical.userId, email: "", deep: false },
    { scope: "operator", userId: null, email: "", deep: true },
    { scope: "operator, heavy email", userId: null, email: heavy.email, deep: true },
    { scope: "operator, typical email", userId: null, email: typical.email, deep: false },
  ];
  const out: Case[] = [];
  for (const s of scopes)
    for (const page of s.deep ? (["first", "deep"] as const) : (["first"] as const))
      for (const sort of ["newest", "highest_total"] as const)
        for (const filter of filters(newestMs))
          out.push({ scope: s.scope, filter, sort, page, userId: s.userId, email: s.email });
  return out;
}

/** The gRPC request of a case. */
/**
 * The bearer token for a case's caller: the operator's, or the case's buyer's. One token per caller,
 * reused as a client would (the server caches verified tokens).
 */
export function bearers(): (c: Case) => string {
  const tokens = new Map<string | null, string>([[null, token({ scopes: ["operator"], expiresInS: 3600 })]]);
  return (c) => {
    const known = tokens.get(c.userId);
    if (known) return known;
    const t = userToken(c.userId as string);
    tokens.set(c.userId, t);
    return t;
  };
}

export function request(c: Case, pageToken = ""): ListOrdersRequest {
  const f = c.filter;
  return create(ListOrdersRequestSchema, {
    userId: c.userId ?? "",
    customerEmail: c.email,
    ...(f.createdAfterMs !== undefined && { createdAfter: timestampFromMs(f.createdAfterMs) }),
    ...(f.createdBeforeMs !== undefined && { createdBefore: timestampFromMs(f.createdBeforeMs) }),
    statuses: (f.statuses ?? []).map((s) => STATUS[s]),
    ...(f.minTotalMinor !== undefined && { minTotalMinor: BigInt(f.minTotalMinor) }),
    ...(f.maxTotalMinor !== undefined && { maxTotalMinor: BigInt(f.maxTotalMinor) }),
    includeArchived: f.includeArchived ?? false,
    sort: c.sort === "newest" ? OrderSort.NEWEST : OrderSort.HIGHEST_TOTAL,
    pageSize: PAGE_SIZE,
    pageToken,
  });
}

/** RFC 3339 with microseconds, as the handler passes times on (timestampMicros in order.handler.ts). */
const micros = (ms: number) => `${new Date(ms).toISOString().slice(0, 23)}000Z`;

/** The same case as the handler hands it to listOrderIds, for listOrdersStatement. */
export function query(c: Case): ListOrdersQuery {
  const f = c.filter;
  return {
    userId: c.userId,
    createdAfter: f.createdAfterMs === undefined ? null : micros(f.createdAfterMs),
    createdBefore: f.createdBeforeMs === undefined ? null : micros(f.createdBeforeMs),
    statuses: f.statuses ?? [],
    minTotalMinor: f.minTotalMinor ?? null,
    maxTotalMinor: f.maxTotalMinor ?? null,
    customerEmail: c.email,
    includeArchived: f.includeArchived ?? false,
    sort: c.sort,
    pageSize: PAGE_SIZE,
    pageToken: "",
  };
}

/**
 * An order a deep page can start after: its sort key parts as order.queries.ts reads them (int64s and
 * epoch microseconds as text), and what the filters look at.
 */
export interface OrderKey {
  id: string;
  totalKey: string;
  createdUs: string;
  status: OrderStatus;
  archived: boolean;
}

/**
 * Whether the order is in the case's listing (the filters of listOrdersStatement): the server only
 * issues tokens after such orders, so only they make honest deep-page positions.
 */
export function inListing(c: Case, k: OrderKey): boolean {
  const f = c.filter;
  const created = BigInt(k.createdUs);
  const total = Number(k.totalKey);
  const us = (ms: number) => BigInt(ms) * 1000n;
  return (
    (f.includeArchived === true || !k.archived) &&
    (f.createdAfterMs === undefined || created >= us(f.createdAfterMs)) &&
    (f.createdBeforeMs === undefined || created < us(f.createdBeforeMs)) &&
    (f.statuses === undefined || f.statuses.includes(k.status)) &&
    (f.minTotalMinor === undefined || total >= f.minTotalMinor) &&
    (f.maxTotalMinor === undefined || total <= f.maxTotalMinor)
  );
}

/** The keyset key a page token carries for `sort` after this order (sortKey in order.queries.ts). */
export const keyOf = (sort: Sort, k: OrderKey): string[] =>
  sort === "newest" ? [k.createdUs, k.id] : [k.totalKey, k.createdUs, k.id];

/**
 * A page token after `key`, bound to the listing of a token the server issued for this case (its
 * filter hash). The server cannot tell it from one it issued after paging to that order.
 */
export function tokenAfter(serverToken: string, key: string[]): string {
  const listing = (JSON.parse(Buffer.from(serverToken, "base64url").toString("utf8")) as { l: string }).l;
  return encodePageToken({ after: key }, listing);
}

/**
 * The case's filters as an SQL condition on orders (inListing's, in SQL): where a random sample of
 * the scope holds too few orders of a rare filter's listing, deep-page positions are sampled from
 * the listing itself.
 */
export function filterCondition(c: Case): { sql: string; params: unknown[] } {
  const f = c.filter;
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (sql: string, ...values: unknown[]) => {
    where.push(sql);
    params.push(...values);
  };
  if (f.includeArchived !== true) add("not archived");
  if (f.createdAfterMs !== undefined)
    add("created_at >= ?::timestamptz", new Date(f.createdAfterMs).toISOString());
  if (f.createdBeforeMs !== undefined)
    add("created_at < ?::timestamptz", new Date(f.createdBeforeMs).toISOString());
  if (f.statuses !== undefined) add("status in (?)", f.statuses);
  if (f.minTotalMinor !== undefined) add("total_minor >= ?", f.minTotalMinor);
  if (f.maxTotalMinor !== undefined) add("total_minor <= ?", f.maxTotalMinor);
  return { sql: where.length > 0 ? where.join(" and ") : "true", params };
}

/** The scope's SQL condition (on orders), to sample deep-page positions from. */
export function scopeCondition(c: Case): { sql: string; params: unknown[] } {
  if (c.userId !== null) return { sql: "user_id = ?", params: [c.userId] };
  if (c.email !== "") return { sql: "customer_email = ?", params: [c.email] };
  return { sql: "true", params: [] };
}
