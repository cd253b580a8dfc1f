import type { EntityManager } from "@mikro-orm/postgresql";
import type { Logger } from "pino";
import { expireRecords } from "../idempotency/idempotency.js";
import { settleHolds } from "../inventory/holds.repository.js";
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
    // Committed first: a crash here leaves holds of a terminal reservation, which the orphan pass releases.
    for (const r of ended)
      await settleOnShards(shards, r.id, groupByStockShard(shards, r.items), "released", logger);
    return ended.length;
  }

  /**
   * Live holds on this stock shard whose reservation is gone or terminal: release them. Walks every
   * reservation with old live holds, a batch at a time in id order: most of them are simply ACTIVE,
   * and a batch full of those must not hide the orphans behind it pass after pass.
   */
  async function releaseOrphans(shard: Shard): Promise<number> {
    let released = 0;
    let after = "";
    for (;;) {
      const ids = await reservationsWithOldHoldsAfter(
        shard.fork(),
        options.intentTimeoutSeconds,
        after,
        batch,
      );
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
      const last = ids.at(-1);
      if (ids.length < batch || last === undefined) return released;
      after = last;
    }
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
          done.orphanHoldsReleased = await releaseOrphans(shard);
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
 * One page of reservations with live holds on this shard taken before `olderThanSeconds` ago (database
 * clock), in id order after `after` (keyset paging). Belongs next to reservationsWithOldHolds in
 * src/inventory/holds.repository.ts, which has no cursor and so returns the same first batch every time.
 */
async function reservationsWithOldHoldsAfter(
  em: EntityManager,
  olderThanSeconds: number,
  after: string,
  limit: number,
): Promise<string[]> {
  const rows = await em.execute<{ reservation_id: string }[]>(
    `select distinct reservation_id from stock_holds
     where status = 'held' and created_at < now() - make_interval(secs => ?) and reservation_id > ?
     order by reservation_id limit ?`,
    [olderThanSeconds, after, limit],
  );
  return rows.map((r) => String(r.reservation_id));
}
