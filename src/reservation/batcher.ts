import { DomainError } from "../errors.js";
import type { HoldRequest, ShortItem } from "../inventory/holds.repository.js";
import { currentDeadline, timeLeftMs } from "../shard/deadline.js";
import type { Shard } from "../shard/shards.js";

/**
 * Reservations whose stock is all on the buyer's shard go through `shop_reserve` (migration 0004):
 * one statement does the key, the holds, the reservation and the stored answer.
 *
 * Coalescing: requests for the same products on the same shard share a lane. A lane has at most
 * ONE statement in flight, and whatever arrives meanwhile goes into its next statement (up to
 * `maxBatch`). So a hot product has one writer at a time, which takes its row lock once for the
 * whole lot, instead of dozens of transactions queueing on that lock (the collapse measured in
 * ../shared/ecosystem-notes.md: ~2.4k/s with few writers, ~1k/s at 32-64). Uniform traffic finds
 * its lane idle and goes at once, alone: no added wait.
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
  /** The key was there already: its request hash and stored answer ('null' while still running). */
  | { state: "prior"; hash: string; response: unknown }
  /** Nothing written: these items are short, in the request's item order. */
  | { state: "short"; short: ShortItem[] };

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
  busy: boolean;
}

type Raw =
  | { state: "done"; response: unknown }
  | { state: "prior"; hash: string; response: unknown }
  | { state: "short"; short: (ShortItem & { i: number })[] };

export type ReserveBatcher = ReturnType<typeof createReserveBatcher>;

export function createReserveBatcher(opts: { maxBatch: number }) {
  const lanes = new Map<string, Lane>();

  async function run(laneKey: string, lane: Lane): Promise<void> {
    lane.busy = true;
    try {
      while (lane.queue.length > 0) {
        const now = Date.now();
        const batch: Waiting[] = [];
        for (const w of lane.queue.splice(0, opts.maxBatch)) {
          // A caller whose deadline has passed was answered DEADLINE_EXCEEDED: never write for it.
          if (w.deadline !== undefined && w.deadline - now <= 1) w.reject(tooLate());
          else batch.push(w);
        }
        if (batch.length === 0) continue;
        const deadlines = batch.flatMap((w) => (w.deadline === undefined ? [] : [w.deadline]));
        const lockMs = deadlines.length > 0 ? timeLeftMs(Math.min(...deadlines), now) : null;
        try {
          const rows = await lane.shard.sql<{ results: Raw[] }>(
            "select shop_reserve($1::jsonb, $2) as results",
            [JSON.stringify(batch.map((w) => encode(w.request))), lockMs],
          );
          const results = rows[0]?.results ?? [];
          batch.forEach((w, i) => {
            const r = results[i];
            if (r === undefined) w.reject(new Error("shop_reserve returned fewer results than requests"));
            else w.resolve(decode(r));
          });
        } catch (e) {
          for (const w of batch) w.reject(e);
        }
      }
    } finally {
      lane.busy = false;
      lanes.delete(laneKey);
    }
  }

  return {
    /** Queues the request on its lane and resolves with its outcome. */
    submit(shard: Shard, request: LocalReserve): Promise<LocalOutcome> {
      const laneKey = `${shard.index}|${request.items.map((i) => i.productId).join(",")}`;
      let lane = lanes.get(laneKey);
      if (!lane) {
        lane = { shard, queue: [], busy: false };
        lanes.set(laneKey, lane);
      }
      const waiting = lane;
      return new Promise<LocalOutcome>((resolve, reject) => {
        waiting.queue.push({ request, deadline: currentDeadline(), resolve, reject });
        if (!waiting.busy) void run(laneKey, waiting);
      });
    },
  };
}

/** The function's input for one request; items sorted by product id (the lock order), `i` = index. */
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
