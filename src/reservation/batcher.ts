import { DomainError } from "../errors.js";
import type { HoldRequest, ShortItem } from "../inventory/holds.repository.js";
import { currentDeadline, timeLeftMs } from "../shard/deadline.js";
import type { Shard } from "../shard/shards.js";

/**
 * Reservations whose stock is all on the buyer's shard go through `shop_reserve` (migration 0004):
 * one statement does the keys, the holds, the reservations and the stored answers of a whole batch.
 *
 * Coalescing: each shard has one queue and at most `writers` statements in flight. A request that
 * finds a writer free goes at once, alone (no added wait when the shard is quiet); requests that
 * arrive while every writer is busy go together in the next statement, up to `maxBatch`. So:
 *  - a hot product has at most `writers` transactions on its row at any time, each taking the row
 *    lock once for its whole lot, instead of dozens queueing on that lock (the collapse measured in
 *    ../shared/ecosystem-notes.md: ~2.4k/s with few writers, ~1k/s at 32-64);
 *  - under load one round trip and one commit serve many callers, on every product.
 * Batches lock their stock rows in one sorted order, so concurrent batches never deadlock.
 */

/** One reservation to make on its buyer's shard. */
export interface LocalReserve {
  id: string;
  bucket: number;
  userId: string;
  scope: string;
  key: string;
  requestHash: string;
  ttlSeconds: number;
  /** Items with the ledger row id each will write. */
  items: (HoldRequest & { movementId: string })[];
}

/** What became of one request. */
export type LocalOutcome =
  | { state: "done"; response: unknown }
  /** The key was there already: its request hash and stored answer (null while still running). */
  | { state: "prior"; hash: string; response: unknown }
  /** Nothing written: these items are short, in the request's item order. */
  | { state: "short"; short: ShortItem[] };

export interface BatcherOptions {
  /** Statements in flight per shard. */
  writers: number;
  /** Requests per statement at most. */
  maxBatch: number;
}

interface Waiting {
  request: LocalReserve;
  /** The caller's deadline (epoch ms), if it has one. */
  deadline: number | undefined;
  resolve(outcome: LocalOutcome): void;
  reject(error: unknown): void;
}

interface Lane {
  shard: Shard;
  queue: Waiting[];
  running: number;
}

type Raw =
  | { state: "done"; response: unknown }
  | { state: "prior"; hash: string; response: unknown }
  | { state: "short"; short: (ShortItem & { i: number })[] };

/** A lock wait cut by lock_timeout (the shortest deadline in the batch). */
const LOCK_TIMEOUT = "55P03";

export type ReserveBatcher = ReturnType<typeof createReserveBatcher>;

export function createReserveBatcher(opts: BatcherOptions) {
  const lanes = new Map<number, Lane>();

  function laneOf(shard: Shard): Lane {
    let lane = lanes.get(shard.index);
    if (!lane) {
      lane = { shard, queue: [], running: 0 };
      lanes.set(shard.index, lane);
    }
    return lane;
  }

  function pump(lane: Lane): void {
    while (lane.running < opts.writers && lane.queue.length > 0) {
      const now = Date.now();
      const batch: Waiting[] = [];
      for (const w of lane.queue.splice(0, opts.maxBatch)) {
        // A caller whose deadline has passed was answered DEADLINE_EXCEEDED: never write for it.
        if (w.deadline !== undefined && w.deadline - now <= 1) w.reject(tooLate());
        else batch.push(w);
      }
      if (batch.length === 0) continue;
      lane.running++;
      void run(lane, batch).finally(() => {
        lane.running--;
        pump(lane);
      });
    }
  }

  async function run(lane: Lane, batch: Waiting[]): Promise<void> {
    const now = Date.now();
    const deadlines = batch.flatMap((w) => (w.deadline === undefined ? [] : [w.deadline]));
    const first = deadlines.length > 0 ? Math.min(...deadlines) : undefined;
    try {
      const rows = await lane.shard.sql<{ results: Raw[] }>("select shop_reserve($1::jsonb, $2) as results", [
        JSON.stringify(batch.map((w) => encode(w.request))),
        first === undefined ? null : timeLeftMs(first, now),
      ]);
      const results = rows[0]?.results ?? [];
      batch.forEach((w, i) => {
        const r = results[i];
        if (r === undefined) w.reject(new Error("shop_reserve returned fewer results than requests"));
        else w.resolve(decode(r));
      });
    } catch (e) {
      if ((e as { code?: unknown }).code !== LOCK_TIMEOUT || first === undefined) {
        for (const w of batch) w.reject(e);
        return;
      }
      // The wait was cut for the batch's shortest deadline: that caller is answered; the others
      // still have time and go again (nothing of this batch was written).
      const again = batch.filter((w) => w.deadline !== first);
      for (const w of batch) if (w.deadline === first) w.reject(e);
      lane.queue.unshift(...again);
    }
  }

  return {
    /** Queues the request on its shard's lane and resolves with its outcome. */
    submit(shard: Shard, request: LocalReserve): Promise<LocalOutcome> {
      const lane = laneOf(shard);
      return new Promise<LocalOutcome>((resolve, reject) => {
        lane.queue.push({ request, deadline: currentDeadline(), resolve, reject });
        pump(lane);
      });
    },
  };
}

/** The function's input for one request; items sorted by product id, `i` = the item's index. */
function encode(r: LocalReserve) {
  const items = r.items
    .map((item, i) => ({ p: item.productId, w: item.warehouseId, q: item.quantity, m: item.movementId, i }))
    .sort((a, b) => (a.p < b.p ? -1 : a.p > b.p ? 1 : 0));
  return {
    id: r.id,
    bucket: r.bucket,
    user: r.userId,
    scope: r.scope,
    key: r.key,
    hash: r.requestHash,
    ttl: r.ttlSeconds,
    items,
  };
}

function decode(r: Raw): LocalOutcome {
  if (r.state !== "short") return r;
  const short = [...r.short]
    .sort((a, b) => a.i - b.i)
    .map(({ productId, warehouseId, requested, available }) => ({
      productId,
      warehouseId,
      requested: Number(requested),
      available: Number(available),
    }));
  return { state: "short", short };
}

function tooLate(): DomainError {
  return new DomainError("deadline_exceeded", "deadline exceeded before the reservation was made");
}
