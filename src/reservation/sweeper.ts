import type { Logger } from "pino";
import { expireRecords } from "../idempotency/idempotency.js";
import { reservationsWithOldHolds, settleHolds } from "../inventory/holds.repository.js";
import { parseId } from "../shard/ids.js";
import type { Shard, ShardSet } from "../shard/shards.js";
import { groupByStockShard, settleOnShards } from "./holds.js";
import { TERMINAL } from "./reservation.model.js";
import * as repo from "./reservation.repository.js";

/** What the sweeper did since the process started (also logged per pass). */
export interface SweepCounts {
  expired: number;
  failedIntents: number;
  orphanHoldsReleased: number;
  /** Orders whose stock step (sell after creation, return after a cancel) the repair pass finished. */
  ordersRepaired: number;
  /** Finished idempotency records deleted after IDEMPOTENCY_RETENTION_H. */
  idempotencyRecordsExpired: number;
  passes: number;
  errors: number;
}

export interface SweeperOptions {
  intervalMs: number;
  /** A PENDING reservation older than this is a crashed saga: failed and its holds released. */
  intentTimeoutSeconds: number;
  /** Finished idempotency records older than this are deleted (a replay after it is a new request). */
  idempotencyRetentionSeconds?: number;
  batchSize?: number;
}

export type Sweeper = ReturnType<typeof createSweeper>;

/**
 * Repairs and expiry, in every instance. Batches are claimed with SELECT … FOR UPDATE SKIP LOCKED,
 * so concurrent sweepers never work on the same reservation; every step is idempotent, so a sweeper
 * killed mid-pass leaves work the next pass finishes. All times are the database's clock.
 */
export function createSweeper(
  deps: {
    shards: ShardSet;
    logger: Logger;
    /** Extra repair of one shard after the reservation passes (the order module's stock repair). */
    repairOrders?: (shard: Shard, olderThanSeconds: number) => Promise<number>;
  },
  options: SweeperOptions,
) {
  const { shards, logger } = deps;
  const batch = options.batchSize ?? 100;
  const counts: SweepCounts = {
    expired: 0,
    failedIntents: 0,
    orphanHoldsReleased: 0,
    ordersRepaired: 0,
    idempotencyRecordsExpired: 0,
    passes: 0,
    errors: 0,
  };

  /** Moves a batch of reservations to `to` and releases their holds. */
  async function endBatch(shard: Shard, kind: "expired" | "stale_pending"): Promise<number> {
    const ended = await shard.fork().transactional(async (tx) => {
      const ids = await repo.lockSweepBatch(tx, kind, options.intentTimeoutSeconds, batch);
      const out = [];
      for (const id of ids) {
        const from = kind === "expired" ? "active" : "pending";
        if (await repo.transition(tx, id, [from], kind === "expired" ? "expired" : "failed")) {
          out.push((await repo.findReservation(tx, id)) ?? null);
        }
      }
      return out.filter((r) => r !== null);
    });
    // Committed first, with its settlement row: a crash here leaves that row, which settleOwed finishes.
    for (const r of ended) {
      const moved = await settleOnShards(
        shards,
        r.id,
        groupByStockShard(shards, r.items),
        "released",
        logger,
      );
      if (moved !== undefined) await repo.settled(shard.fork(), [r.id]);
    }
    return ended.length;
  }

  /**
   * Reservations on this (buyer's) shard whose holds are owed back and due (hold_settlements,
   * migration 0006): what a release, an expiry or a failed saga left when its process died before
   * the stock went back, or a failed saga's window for late holds that has now closed. Settles each
   * on its stock shards and forgets it; one whose stock shard fails stays for the next pass, and
   * the pages go on past it. At most 10 pages a pass. Returns how many holds moved.
   */
  async function settleOwed(shard: Shard): Promise<number> {
    let moved = 0;
    let after = "";
    for (let page = 0; page < 10; page++) {
      const ids = await repo.dueSettlements(shard.fork(), after, batch);
      const done: string[] = [];
      for (const id of ids) {
        const r = await repo.findReservation(shard.fork(), id);
        const groups = groupByStockShard(shards, r?.items ?? []);
        const n = await settleOnShards(shards, id, groups, "released", logger);
        if (n === undefined) continue;
        moved += n;
        done.push(id);
      }
      await repo.settled(shard.fork(), done);
      const last = ids.at(-1);
      if (ids.length < batch || last === undefined) return moved;
      after = last;
    }
    return moved;
  }

  /** Where each stock shard's orphan scrub goes on from at the next pass ("" = from the start). */
  const scrubFrom = new Map<number, string>();

  /**
   * The backstop for holds no settlement row covers (left before migration 0006, or by a path not
   * foreseen): one page of the live holds older than the intent bound on this stock shard per pass,
   * going on from where the last pass stopped and starting over at the end, whose reservation is
   * missing or RELEASED / EXPIRED / FAILED are released. Most of those holds belong to ACTIVE
   * reservations, so the page is bounded: a pass costs the same whatever the number of live
   * reservations, and a whole round takes (live reservations / batch) passes.
   */
  async function scrubOrphans(shard: Shard): Promise<number> {
    const after = scrubFrom.get(shard.index) ?? "";
    const ids = await reservationsWithOldHolds(shard.fork(), options.intentTimeoutSeconds, after, batch);
    scrubFrom.set(shard.index, ids.length < batch ? "" : (ids.at(-1) ?? ""));
    return releaseOrphaned(shards, shard, ids);
  }

  async function pass(): Promise<void> {
    counts.passes++;
    for (const shard of shards.shards) {
      try {
        // Each step is counted as soon as it is done: a later step failing does not hide it.
        const done = {
          expired: 0,
          failedIntents: 0,
          orphanHoldsReleased: 0,
          ordersRepaired: 0,
          idempotencyRecordsExpired: 0,
        };
        try {
          done.expired = await endBatch(shard, "expired");
          counts.expired += done.expired;
          done.failedIntents = await endBatch(shard, "stale_pending");
          counts.failedIntents += done.failedIntents;
          done.orphanHoldsReleased = (await settleOwed(shard)) + (await scrubOrphans(shard));
          counts.orphanHoldsReleased += done.orphanHoldsReleased;
          done.ordersRepaired = (await deps.repairOrders?.(shard, options.intentTimeoutSeconds)) ?? 0;
          counts.ordersRepaired += done.ordersRepaired;
          if (options.idempotencyRetentionSeconds !== undefined) {
            done.idempotencyRecordsExpired = await expireRecords(
              shard.fork(),
              options.idempotencyRetentionSeconds,
              10 * batch,
            );
            counts.idempotencyRecordsExpired += done.idempotencyRecordsExpired;
          }
        } finally {
          if (Object.values(done).some((n) => n > 0)) logger.info({ shard: shard.index, ...done }, "sweep");
        }
      } catch (err) {
        counts.errors++;
        logger.warn({ err, shard: shard.index }, "sweep of a shard failed; next pass retries");
      }
    }
  }

  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  return {
    counts,
    /** One full pass over every shard (the timer calls this; tests may too). */
    runOnce: async (): Promise<void> => {
      running = pass();
      await running;
    },
    start(): void {
      const tick = () => {
        running = pass().finally(() => {
          if (timer) timer = setTimeout(tick, options.intervalMs).unref();
        });
      };
      timer = setTimeout(tick, options.intervalMs).unref();
    },
    async stop(): Promise<void> {
      if (timer) clearTimeout(timer);
      timer = undefined;
      await running;
    },
  };
}

/**
 * Of these reservations with live holds on stock shard `shard`, releases the holds of those whose
 * reservation is missing or RELEASED / EXPIRED / FAILED (asking each buyer's shard once for the
 * lot). Returns how many holds moved.
 */
export async function releaseOrphaned(shards: ShardSet, shard: Shard, ids: string[]): Promise<number> {
  let released = 0;
  const byBuyerShard = new Map<Shard, string[]>();
  for (const id of ids) {
    const buyer = shards.forBucket(parseId(id, "res", "reservation_id").bucket);
    byBuyerShard.set(buyer, [...(byBuyerShard.get(buyer) ?? []), id]);
  }
  for (const [buyer, group] of byBuyerShard) {
    const statuses = await repo.statusesOf(buyer.fork(), group);
    for (const id of group) {
      const status = statuses.get(id);
      if (status === "confirmed") continue; // its holds become sold by the order flow, never released
      if (status !== undefined && !TERMINAL.has(status)) continue; // active, or pending (the intent pass owns it)
      released += await shard.fork().transactional((tx) => settleHolds(tx, id, "released"));
    }
  }
  return released;
}
