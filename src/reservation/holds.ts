import type { Logger } from "pino";
import { DomainError } from "../errors.js";
import {
  type HoldRequest,
  insufficientStock,
  type ShortItem,
  settleHolds,
} from "../inventory/holds.repository.js";
import { currentDeadline, timeLeftMs } from "../shard/deadline.js";
import { newId, parseId } from "../shard/ids.js";
import type { ShardSet } from "../shard/shards.js";
import type { ReservedItem } from "./reservation.model.js";

/**
 * The stock side of a reservation: items grouped by the shard their stock lives on (the seller's
 * shard, read from each product id's bucket), one transaction per shard.
 */
export interface ShardGroup {
  shard: number;
  /** A bucket of that shard, for the ids of the ledger rows written there. */
  bucket: number;
  items: HoldRequest[];
}

/** Groups items by stock shard, in shard order (a stable order for every caller). */
export function groupByStockShard(shards: ShardSet, items: HoldRequest[], field = "items"): ShardGroup[] {
  const groups = new Map<number, ShardGroup>();
  items.forEach((item, i) => {
    const { bucket } = parseId(item.productId, "prd", `${field}[${i}].product_id`);
    const shard = shards.forBucket(bucket).index;
    const group = groups.get(shard) ?? { shard, bucket, items: [] };
    group.items.push(item);
    groups.set(shard, group);
  });
  return [...groups.values()].sort((a, b) => a.shard - b.shard);
}

/**
 * Takes the holds of one shard group on that shard: one statement (shop_hold_by, migration 0006),
 * all or nothing, safe to repeat. Lock waits end before the caller's deadline and before `notAfter`
 * (the saga's hold window, a timestamp of the buyer's shard); after it the shard refuses.
 */
export async function holdOnShard(
  shards: ShardSet,
  reservationId: string,
  group: ShardGroup,
  notAfter: string,
): Promise<ReservedItem[]> {
  const shard = shards.shards[group.shard];
  if (!shard) throw new Error(`no shard ${group.shard}`);
  const items = group.items
    .map((item) => ({
      p: item.productId,
      w: item.warehouseId,
      q: item.quantity,
      m: newId("mov", group.bucket),
    }))
    .sort((a, b) => (a.p < b.p ? -1 : a.p > b.p ? 1 : 0));
  const deadline = currentDeadline();
  const rows = await shard.sql<{ result: HoldOutcome }>(
    "select shop_hold_by($1, $2::jsonb, $3, $4::timestamptz) as result",
    [reservationId, JSON.stringify(items), deadline === undefined ? null : timeLeftMs(deadline), notAfter],
  );
  const result = rows[0]?.result;
  if (result?.state === "held") return result.holds.map((h) => ({ ...h, quantity: Number(h.quantity) }));
  if (result?.state === "short")
    throw insufficientStock(
      result.short.map((s) => ({ ...s, requested: Number(s.requested), available: Number(s.available) })),
    );
  if (result?.state === "late") throw tookTooLong();
  throw new DomainError("reservation_expired", "the reservation's holds were already released");
}

/** A saga past its hold window (or failed by the sweeper meanwhile): rolled back, the caller retries. */
export const tookTooLong = () =>
  new DomainError("deadline_exceeded", "the reservation took too long and was rolled back, retry");

type HoldOutcome =
  | { state: "held"; holds: ReservedItem[] }
  | { state: "short"; short: ShortItem[] }
  | { state: "gone" }
  | { state: "late" };

/**
 * Takes the holds of every group, all shards at once (each shard's step is its own statement). If
 * any shard refuses for lack of stock, the error names every short item of every shard; whatever
 * was held is the caller's to release (it compensates on any failure). `notAfter` is the saga's
 * hold window (holdOnShard). `onHeld` is called after each shard's hold commits, with how many have
 * so far.
 */
export async function holdAll(
  shards: ShardSet,
  reservationId: string,
  groups: ShardGroup[],
  notAfter: string,
  onHeld: (count: number) => void,
): Promise<ReservedItem[]> {
  let count = 0;
  const results = await Promise.allSettled(
    groups.map(async (group) => {
      const held = await holdOnShard(shards, reservationId, group, notAfter);
      onHeld(++count);
      return held;
    }),
  );
  const failures = results.flatMap((r) => (r.status === "rejected" ? [r.reason as unknown] : []));
  const other = failures.find((e) => !(e instanceof DomainError) || e.reason !== "insufficient_stock");
  if (other !== undefined) throw other;
  if (failures.length > 0)
    throw insufficientStock(failures.flatMap((e) => (e as DomainError).details as ShortItem[]));
  return results.flatMap((r) => (r.status === "fulfilled" ? r.value : []));
}

/**
 * Releases (or sells) every live hold of a reservation on the given shards; idempotent. Returns how
 * many holds moved, or undefined when a shard failed. Failures are logged and reported, never
 * thrown: the sweeper repairs whatever is left behind.
 */
export async function settleOnShards(
  shards: ShardSet,
  reservationId: string,
  groups: ShardGroup[],
  to: "released" | "sold",
  logger: Logger,
): Promise<number | undefined> {
  const results = await Promise.allSettled(
    groups.map(async (g) => {
      const shard = shards.shards[g.shard];
      if (!shard) throw new Error(`no shard ${g.shard}`);
      return shard.fork().transactional((tx) => settleHolds(tx, reservationId, to));
    }),
  );
  let moved = 0;
  for (const r of results) {
    if (r.status === "fulfilled") moved += r.value;
    else logger.warn({ err: r.reason, reservationId, to }, "settling holds failed; the sweeper will repair");
  }
  return results.every((r) => r.status === "fulfilled") ? moved : undefined;
}
