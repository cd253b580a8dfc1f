import { settleHolds } from "../../src/inventory/holds.repository.js";
import { TERMINAL } from "../../src/reservation/reservation.model.js";
import * as repo from "../../src/reservation/reservation.repository.js";
import { parseId } from "../../src/shard/ids.js";
import type { Shard, ShardSet } from "../../src/shard/shards.js";

/**
 * The orphan pass the sweeper ran before migration 0006 (a reference for bench/sweeper.ts, not
 * product code): every pass walked every live hold older than the intent bound on each stock shard,
 * a page at a time, and asked the buyer's shard for each reservation's status. Returns the holds it
 * released.
 */
export async function fullOrphanWalk(
  shards: ShardSet,
  olderThanSeconds: number,
  batch: number,
): Promise<number> {
  let released = 0;
  for (const shard of shards.shards) {
    let after = "";
    for (;;) {
      const rows = await shard.fork().execute<{ reservation_id: string }[]>(
        `select distinct reservation_id from stock_holds
         where status = 'held' and created_at < now() - make_interval(secs => ?) and reservation_id > ?
         order by reservation_id limit ?`,
        [olderThanSeconds, after, batch],
      );
      const ids = rows.map((r) => String(r.reservation_id));
      const byBuyerShard = new Map<Shard, string[]>();
      for (const id of ids) {
        const buyer = shards.forBucket(parseId(id, "res", "reservation_id").bucket);
        byBuyerShard.set(buyer, [...(byBuyerShard.get(buyer) ?? []), id]);
      }
      for (const [buyer, group] of byBuyerShard) {
        const statuses = await repo.statusesOf(buyer.fork(), group);
        for (const id of group) {
          const status = statuses.get(id);
          if (status === "confirmed" || (status !== undefined && !TERMINAL.has(status))) continue;
          released += await shard.fork().transactional((tx) => settleHolds(tx, id, "released"));
        }
      }
      const last = ids.at(-1);
      if (ids.length < batch || last === undefined) break;
      after = last;
    }
  }
  return released;
}
