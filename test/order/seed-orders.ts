import type { OrderStatus } from "../../src/order/order.model.js";
import { newId } from "../../src/shard/ids.js";
import { bucketOfUser } from "../../src/shard/router.js";
import type { ShardSet } from "../../src/shard/shards.js";

/**
 * Named seed for list and ranking tests: valid orders written straight into the shard databases
 * (plain multi-row INSERTs, thousands per second), each on its buyer's shard, respecting every
 * CHECK and unique key of 0003. No items, payments or events: lists and rankings read only `orders`.
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
  totalMinor: number;
  paidMinor: number;
  refundedMinor: number;
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

const STATUSES: readonly OrderStatus[] = [
  "pending",
  "confirmed",
  "processing",
  "shipped",
  "delivered",
  "cancelled",
];

/**
 * Random top-level orders with deliberate ties: about a fifth reuse an earlier created_at (down to
 * the microsecond), some fall exactly on a millisecond, and totals come from 200 values.
 */
export function randomOrders(o: RandomOrdersOptions): SeededOrder[] {
  const rng = o.rng ?? Math.random;
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)] as T;
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
    let createdUs = fromUs + BigInt(Math.floor(rng() * spanUs));
    const tie = rng();
    if (tie < 0.2 && orders.length > 0) createdUs = pick(orders).createdUs;
    else if (tie < 0.3) createdUs -= createdUs % 1000n; // on a millisecond: exercises >= and < bounds
    const totalMinor = rng() < 0.03 ? 0 : 100 * (1 + Math.floor(rng() * 200));
    const paidRoll = rng();
    const paidMinor =
      totalMinor === 0 || paidRoll < 0.3 ? 0 : paidRoll < 0.85 ? totalMinor : Math.floor(rng() * totalMinor);
    const refundedMinor = paidMinor > 0 && rng() < 0.2 ? Math.floor(rng() * (paidMinor + 1)) : 0;
    orders.push(
      order({
        userId: pick(o.users),
        customerEmail: pick(o.emails),
        status: pick(STATUSES),
        currencyCode: currency(),
        totalMinor,
        paidMinor,
        refundedMinor,
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
  f: Omit<SeededOrder, "id" | "parentOrderId"> & { parentOrderId?: string; idTimeMs?: number },
): SeededOrder {
  const { idTimeMs, ...fields } = f;
  const ms = idTimeMs ?? Number(fields.createdUs / 1000n);
  return { parentOrderId: "", ...fields, id: newId("ord", bucketOfUser(fields.userId), ms) };
}

/**
 * Inserts orders on their buyers' shards, parents before children (a child references its parent).
 * order_number and reservation_id derive from the id, so both stay unique.
 */
export async function insertOrders(shards: ShardSet, orders: readonly SeededOrder[]): Promise<void> {
  const byShard = new Map<number, SeededOrder[]>();
  for (const o of orders) {
    const index = shards.forUser(o.userId).index;
    byShard.set(index, [...(byShard.get(index) ?? []), o]);
  }
  await Promise.all(
    [...byShard].map(async ([index, rows]) => {
      const em = shards.shards[index]?.fork();
      if (!em) throw new Error(`no shard ${index}`);
      const ordered = [...rows.filter((r) => !r.parentOrderId), ...rows.filter((r) => r.parentOrderId)];
      for (let i = 0; i < ordered.length; i += 500) {
        const chunk = ordered.slice(i, i + 500);
        await em.execute(
          `insert into orders (id, bucket, order_number, user_id, customer_email, status, parent_order_id,
             seller_id, reservation_id, currency_code, total_minor, paid_minor, refunded_minor, stock_status,
             archived, created_at, updated_at)
           values ${chunk.map(() => "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?::timestamptz, ?::timestamptz)").join(", ")}`,
          chunk.flatMap((o) => {
            const body = o.id.slice("ord_".length);
            const created = microsToIso(o.createdUs);
            return [
              o.id,
              bucketOfUser(o.userId),
              `SO-T-${body}`,
              o.userId,
              o.customerEmail,
              o.status,
              o.parentOrderId || null,
              "seed-seller",
              `res_seed_${body}`,
              o.currencyCode,
              o.totalMinor,
              o.paidMinor,
              o.refundedMinor,
              o.status === "cancelled" ? "returned" : "sold",
              o.archived,
              created,
              created,
            ];
          }),
        );
      }
    }),
  );
}

/** Epoch microseconds as an exact ISO-8601 UTC timestamp with six fractional digits. */
export function microsToIso(us: bigint): string {
  const ms = us / 1000n;
  const rest = (us % 1000n).toString().padStart(3, "0");
  return new Date(Number(ms)).toISOString().replace("Z", `${rest}Z`);
}
