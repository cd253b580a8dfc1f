import type { EntityManager } from "@mikro-orm/postgresql";
import { ORDER_STATUSES, type OrderStatus } from "../../src/order/order.model.js";
import type { ListOrdersQuery } from "../../src/order/order.queries.js";
import { newId } from "../../src/shard/ids.js";
import { bucketOfUser } from "../../src/shard/router.js";
import type { ShardSet } from "../../src/shard/shards.js";

/**
 * Named seed for list and ranking tests: valid orders written straight into the shard databases
 * (plain multi-row INSERTs, thousands per second), each on its buyer's shard. Every row respects the
 * CHECKs and unique keys of 0003 and is consistent the way checkOrders (order-check.ts) checks
 * it, since other test files run that check over every order of the shared shards: one line whose
 * total is the order's, one captured payment for what was paid, refunds as refunded quantities, and
 * one history row per version. Each order is written in one transaction with its lines and history.
 */

/** One seeded order: what the tests' models need, with `created_at` exact to the microsecond. */
export interface SeededOrder {
  id: string;
  userId: string;
  customerEmail: string;
  status: OrderStatus;
  /** '' for a top-level order. */
  parentOrderId: string;
  currencyCode: string;
  /** quantity * unit price of the order's one line. */
  totalMinor: number;
  paidMinor: number;
  /** refunded quantity * unit price. */
  refundedMinor: number;
  /** The quantity of the order's one line (it divides totalMinor). */
  quantity: number;
  archived: boolean;
  /** created_at as epoch microseconds. */
  createdUs: bigint;
}

/** A small deterministic PRNG (mulberry32), so a failing model test can be replayed from its seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface RandomOrdersOptions {
  count: number;
  users: readonly string[];
  emails: readonly string[];
  /** created_at is drawn from [from, to). Keep it to a window no other test file uses. */
  from: Date;
  to: Date;
  /** [code, weight] pairs; default mostly EUR. */
  currencies?: readonly [string, number][];
  rng?: () => number;
}

/**
 * Random top-level orders with deliberate ties: about a fifth reuse an earlier created_at (down to
 * the microsecond), a tenth fall exactly on a millisecond, and totals (unit price 100..5000 in
 * steps of 100, times 1..4) repeat often.
 */
export function randomOrders(o: RandomOrdersOptions): SeededOrder[] {
  const rng = o.rng ?? Math.random;
  const int = (n: number) => Math.floor(rng() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)] as T;
  const currencies = o.currencies ?? [
    ["EUR", 85],
    ["USD", 10],
    ["GBP", 5],
  ];
  const weight = currencies.reduce((s, [, w]) => s + w, 0);
  const currency = (): string => {
    let r = rng() * weight;
    for (const [code, w] of currencies) {
      r -= w;
      if (r < 0) return code;
    }
    return currencies[0]?.[0] ?? "EUR";
  };
  const fromUs = BigInt(o.from.getTime()) * 1000n;
  const spanUs = Number(BigInt(o.to.getTime()) * 1000n - fromUs);
  const orders: SeededOrder[] = [];
  for (let i = 0; i < o.count; i++) {
    let createdUs = fromUs + BigInt(int(spanUs));
    const tie = rng();
    if (tie < 0.2 && orders.length > 0) createdUs = pick(orders).createdUs;
    else if (tie < 0.3) createdUs -= createdUs % 1000n; // on a millisecond: exercises >= and < bounds
    const unit = rng() < 0.03 ? 0 : 100 * (1 + int(50));
    const quantity = 1 + int(4);
    const totalMinor = unit * quantity;
    const paidRoll = rng();
    const paidMinor =
      totalMinor === 0 || paidRoll < 0.3 ? 0 : paidRoll < 0.85 ? totalMinor : 1 + int(totalMinor - 1);
    const refundable = unit === 0 ? 0 : Math.floor(paidMinor / unit);
    const refundedMinor = refundable > 0 && rng() < 0.2 ? unit * int(refundable + 1) : 0;
    orders.push(
      order({
        userId: pick(o.users),
        customerEmail: pick(o.emails),
        status: pick(ORDER_STATUSES),
        currencyCode: currency(),
        totalMinor,
        paidMinor,
        refundedMinor,
        quantity,
        archived: rng() < 0.1,
        createdUs,
      }),
    );
  }
  return orders;
}

/**
 * One order with the given fields and a fresh id in the user's bucket. `idTimeMs` sets the time part
 * of the id (ids sort by it first), to place an order just before or after another with equal keys.
 */
export function order(
  f: Omit<SeededOrder, "id" | "parentOrderId" | "quantity"> & {
    parentOrderId?: string;
    quantity?: number;
    idTimeMs?: number;
  },
): SeededOrder {
  const { idTimeMs, ...fields } = f;
  const o: SeededOrder = {
    parentOrderId: "",
    quantity: 1,
    ...fields,
    id: newId("ord", bucketOfUser(fields.userId), idTimeMs ?? Number(fields.createdUs / 1000n)),
  };
  const unit = o.totalMinor / o.quantity;
  const refundedOk = o.refundedMinor === 0 || (unit > 0 && Number.isInteger(o.refundedMinor / unit));
  if (!Number.isInteger(unit) || !refundedOk || o.refundedMinor > o.paidMinor || o.paidMinor > o.totalMinor)
    throw new Error(
      `inconsistent seed order: ${JSON.stringify(o, (_, v) => (typeof v === "bigint" ? `${v}` : v))}`,
    );
  return o;
}

/** The history of a seeded order: created as pending, each step to its status, then archived. */
function history(o: SeededOrder): { kind: string; from: string; to: OrderStatus }[] {
  const path: OrderStatus[] =
    o.status === "cancelled"
      ? ["pending", "cancelled"]
      : ORDER_STATUSES.slice(0, ORDER_STATUSES.indexOf(o.status) + 1);
  const events = path.map((to, i) => ({ kind: i === 0 ? "created" : "status", from: path[i - 1] ?? "", to }));
  if (o.archived) events.push({ kind: "archived", from: o.status, to: o.status });
  return events;
}

/**
 * Inserts orders on their buyers' shards, parents before children (a child references its parent).
 * order_number, reservation_id and the payment reference derive from the id, so all stay unique.
 */
export async function insertOrders(shards: ShardSet, orders: readonly SeededOrder[]): Promise<void> {
  const byShard = new Map<number, SeededOrder[]>();
  for (const o of orders) {
    const index = shards.forUser(o.userId).index;
    byShard.set(index, [...(byShard.get(index) ?? []), o]);
  }
  await Promise.all(
    [...byShard].map(async ([index, rows]) => {
      const shard = shards.shards[index];
      if (!shard) throw new Error(`no shard ${index}`);
      const ordered = [...rows.filter((r) => !r.parentOrderId), ...rows.filter((r) => r.parentOrderId)];
      for (let i = 0; i < ordered.length; i += 500) {
        const chunk = ordered.slice(i, i + 500);
        await shard.fork().transactional((tx) => insertChunk(tx, chunk));
      }
    }),
  );
}

async function insertChunk(tx: EntityManager, chunk: SeededOrder[]): Promise<void> {
  const values = (rows: number, columns: number) =>
    Array.from({ length: rows }, () => `(${Array.from({ length: columns }, () => "?").join(", ")})`).join(
      ", ",
    );
  const body = (o: SeededOrder) => o.id.slice("ord_".length);
  await tx.execute(
    `insert into orders (id, bucket, order_number, user_id, customer_email, status, parent_order_id,
       seller_id, reservation_id, currency_code, total_minor, paid_minor, refunded_minor, stock_status,
       archived, version, created_at, updated_at)
     values ${values(chunk.length, 18)}`,
    chunk.flatMap((o) => [
      o.id,
      bucketOfUser(o.userId),
      `SO-T-${body(o)}`,
      o.userId,
      o.customerEmail,
      o.status,
      o.parentOrderId || null,
      "seed-seller",
      `res_seed_${body(o)}`,
      o.currencyCode,
      o.totalMinor,
      o.paidMinor,
      o.refundedMinor,
      o.status === "cancelled" ? "returned" : "sold",
      o.archived,
      history(o).length,
      microsToIso(o.createdUs),
      microsToIso(o.createdUs),
    ]),
  );
  await tx.execute(
    `insert into order_items (order_id, product_id, seller_id, warehouse_id, sku, name, quantity,
       unit_price_minor, line_total_minor, refunded_quantity)
     values ${values(chunk.length, 10)}`,
    chunk.flatMap((o) => {
      const unit = o.totalMinor / o.quantity;
      return [
        o.id,
        newId("prd", 0),
        "seed-seller",
        "main",
        `SKU-${body(o)}`,
        "Seeded item",
        o.quantity,
        unit,
        o.totalMinor,
        unit === 0 ? 0 : o.refundedMinor / unit,
      ];
    }),
  );
  const paid = chunk.filter((o) => o.paidMinor > 0);
  if (paid.length > 0) {
    await tx.execute(
      `insert into order_payments (id, order_id, amount_minor, currency_code, provider_reference, status)
       values ${values(paid.length, 6)}`,
      paid.flatMap((o) => [
        newId("pay", bucketOfUser(o.userId)),
        o.id,
        o.paidMinor,
        o.currencyCode,
        `seed-${body(o)}`,
        "captured",
      ]),
    );
  }
  // History rows take the next positions of each user's stream (order_streams), as appendEvent does.
  const events = chunk.flatMap((o) => history(o).map((e, i) => ({ o, e, version: i + 1 })));
  const perUser = new Map<string, number>();
  for (const { o } of events) perUser.set(o.userId, (perUser.get(o.userId) ?? 0) + 1);
  const streams = await tx.execute<{ user_id: string; last_seq: string }[]>(
    `insert into order_streams (user_id, last_seq) values ${values(perUser.size, 2)}
     on conflict (user_id) do update set last_seq = order_streams.last_seq + excluded.last_seq
     returning user_id, last_seq`,
    [...perUser].flat(),
  );
  const next = new Map(
    streams.map((s) => [s.user_id, Number(s.last_seq) - (perUser.get(s.user_id) as number) + 1]),
  );
  await tx.execute(
    `insert into order_events (user_id, seq, order_id, version, kind, from_status, to_status, actor, created_at)
     values ${values(events.length, 9)}`,
    events.flatMap(({ o, e, version }) => {
      const seq = next.get(o.userId) as number;
      next.set(o.userId, seq + 1);
      return [o.userId, seq, o.id, version, e.kind, e.from, e.to, "system", microsToIso(o.createdUs)];
    }),
  );
}

/** Epoch microseconds as an exact ISO-8601 UTC timestamp with six fractional digits. */
export function microsToIso(us: bigint): string {
  const ms = us / 1000n;
  const rest = (us % 1000n).toString().padStart(3, "0");
  return new Date(Number(ms)).toISOString().replace("Z", `${rest}Z`);
}

/** A ListOrders query: every filter off, newest first, 20 per page, with `q` on top. */
export const listQuery = (q: Partial<ListOrdersQuery>): ListOrdersQuery => ({
  userId: null,
  createdAfter: null,
  createdBefore: null,
  statuses: [],
  minTotalMinor: null,
  maxTotalMinor: null,
  customerEmail: "",
  includeArchived: false,
  sort: "newest",
  pageSize: 20,
  pageToken: "",
  ...q,
});
