import { releaseOrphaned } from "../../src/reservation/sweeper.js";
import type { ShardSet } from "../../src/shard/shards.js";

/**
 * The orphan pass the sweeper ran before migration 0006 (a reference for bench/sweeper.ts, not
 * product code): every pass walked every live hold older than the intent bound on each stock shard,
 * a page at a time (with the query it had then), and asked the buyer's shard for each reservation's
 * status. Returns the holds it released.
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
      released += await releaseOrphaned(shards, shard, ids);
      const last = ids.at(-1);
      if (ids.length < batch || last === undefined) break;
      after = last;
    }
  }
  return released;
}
