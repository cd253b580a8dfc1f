import { setTimeout as delay } from "node:timers/promises";
import type { EntityManager } from "@mikro-orm/postgresql";
import type { Logger } from "pino";
import { DomainError } from "../errors.js";
import {
  type ClaimResult,
  claimFor,
  claimKey,
  dropKey,
  type IdempotencyClaim,
  inFlight,
  priorClaim,
  reviveJson,
  runIdempotent,
} from "../idempotency/idempotency.js";
import { insufficientStock } from "../inventory/holds.repository.js";
import type { StockLocks } from "../lock/locks.js";
import { newId } from "../shard/ids.js";
import { decodePageToken, keysetPage, listingHash } from "../shard/page-token.js";
import { bucketOfUser } from "../shard/router.js";
import type { Shard, ShardSet } from "../shard/shards.js";
import { createReserveBatcher } from "./batcher.js";
import { groupByStockShard, holdAll, type ShardGroup, settleOnShards, tookTooLong } from "./holds.js";
import type {
  ListReservationsInput,
  ReservationView,
  ReservedItem,
  ReserveInput,
} from "./reservation.model.js";
import * as repo from "./reservation.repository.js";

/** Named points where a fault test may kill the process mid-saga (see FAULT_POINT). */
export type FaultPoint = "after_intent" | "after_first_shard" | "after_holds";

export interface ReservationDeps {
  shards: ShardSet;
  locks: StockLocks;
  logger: Logger;
  /**
   * The sweeper's bound on a PENDING saga (INTENT_TIMEOUT_MS, in seconds). A saga's holds must
   * commit within the first half of it (the hold window); the rest is the margin for clock skew.
   */
  intentTimeoutSeconds: number;
  /** Called at each FaultPoint; production passes a no-op. */
  faultPoint: (point: FaultPoint) => void;
}

export type ReservationService = ReturnType<typeof createReservationService>;

/** A claimed intent: the key and the PENDING row are ours, and its holds must be taken by `holdBy`. */
type IntentClaim = Exclude<ClaimResult, { state: "new" }> | { state: "new"; holdBy: string };

const notFound = () =>
  new DomainError("not_found", "reservation_id: no such reservation", { field: "reservation_id" });

/** The reservation use cases. A reservation is all or nothing across however many stock shards. */
export function createReservationService(deps: ReservationDeps) {
  const { shards, locks, logger } = deps;
  const holdWindowS = deps.intentTimeoutSeconds / 2;
  const batcher = createReserveBatcher({ writers: 2, maxBatch: 64 });

  /** The buyer's reservation or NOT_FOUND (also for another user's: no existence leak). */
  async function owned(
    em: EntityManager,
    userId: string,
    id: string,
    lock = false,
  ): Promise<ReservationView> {
    const r = await repo.findReservation(em, id, lock);
    if (!r || r.userId !== userId) throw notFound();
    return r;
  }

  /**
   * Everything on the buyer's shard: one statement (shop_reserve, through the batcher) claims the
   * key, takes the holds, inserts the reservation and stores the answer, all or nothing.
   */
  async function reserveLocally(
    input: ReserveInput,
    claim: IdempotencyClaim,
    groups: ShardGroup[],
  ): Promise<ReservationView> {
    const bucket = bucketOfUser(input.userId);
    const group = groups[0] as ShardGroup;
    const outcome = await batcher.submit(shards.forBucket(bucket), {
      id: newId("res", bucket),
      bucket,
      userId: input.userId,
      scope: claim.scope,
      key: claim.key,
      requestHash: claim.requestHash,
      ttlSeconds: input.ttlSeconds,
      items: group.items.map((item) => ({ ...item, movementId: newId("mov", group.bucket) })),
    });
    if (outcome.state === "done") return reviveJson(outcome.response) as ReservationView;
    if (outcome.state === "short") throw insufficientStock(outcome.short);
    const prior = priorClaim(claim, outcome.hash, outcome.response);
    if (prior.state !== "done") throw inFlight();
    return prior.response as ReservationView;
  }

  /**
   * The saga's first step in one statement: claims the key already marked as taken by this
   * reservation ({"$pending": id}) and inserts the PENDING intent with its items. A key that exists
   * is read back as claimKey does (the answer, or work still running). A new intent comes with the
   * end of its hold window, on the buyer's shard's clock.
   */
  async function claimIntent(
    buyer: Shard,
    claim: IdempotencyClaim,
    r: { id: string; bucket: number; userId: string; ttlSeconds: number; items: ReserveInput["items"] },
  ): Promise<IntentClaim> {
    const rows = await buyer.sql<{ claimed: boolean; hold_by: string }>(
      `with k as (
         insert into idempotency_records (scope, key, request_hash, response)
         values ($1, $2, $3, jsonb_build_object('$pending', $4::text))
         on conflict (scope, key) do nothing returning 1
       ), r as (
         insert into reservations (id, bucket, user_id, status, expires_at)
         select $4, $5, $6, 'pending', now() + make_interval(secs => $7) from k returning id
       ), i as (
         insert into reservation_items (reservation_id, product_id, warehouse_id, quantity)
         select r.id, t.p, '', t.q from r, unnest($8::text[], $9::bigint[]) as t(p, q)
       )
       select exists (select 1 from k) as claimed, (now() + make_interval(secs => $10))::text as hold_by`,
      [
        claim.scope,
        claim.key,
        claim.requestHash,
        r.id,
        r.bucket,
        r.userId,
        r.ttlSeconds,
        r.items.map((i) => i.productId),
        r.items.map((i) => i.quantity),
        holdWindowS,
      ],
    );
    if (rows[0]?.claimed) return { state: "new", holdBy: rows[0].hold_by };
    const prior = await buyer.sql<{ request_hash: string; response: unknown }>(
      "select request_hash, response from idempotency_records where scope = $1 and key = $2",
      [claim.scope, claim.key],
    );
    const row = prior[0];
    // Dropped since (its first request failed): claim it again.
    if (!row) return claimIntent(buyer, claim, r);
    return priorClaim(claim, row.request_hash, row.response);
  }

  /**
   * The saga: (1) intent row + key on the buyer's shard, while the Redlock (several stock shards)
   * is being taken, (2) one idempotent hold statement per stock shard, all at once, under the lock,
   * within the intent's hold window, (3) the final state, while the lock is being released. Any
   * failure releases what was held and fails the intent; a crash anywhere is repaired by the sweeper.
   */
  async function reserveAcrossShards(
    input: ReserveInput,
    claim: IdempotencyClaim,
    groups: ShardGroup[],
  ): Promise<ReservationView> {
    const bucket = bucketOfUser(input.userId);
    const buyer = shards.forBucket(bucket);
    const id = newId("res", bucket);
    const intent = claimIntent(buyer, claim, {
      id,
      bucket,
      userId: input.userId,
      ttlSeconds: input.ttlSeconds,
      items: input.items,
    });
    intent.catch(() => undefined); // awaited below; a failure while the lock is still awaited is not unhandled
    // The last step, on the buyer's shard: PENDING -> ACTIVE and the answer stored on the key.
    const activate = async (held: ReservedItem[]): Promise<ReservationView | null> => {
      const answer = await buyer.sql<{ answer: unknown }>(
        "select shop_reserve_activate($1, $2, $3::jsonb, $4, $5) as answer",
        [
          id,
          input.ttlSeconds,
          JSON.stringify(held.map(({ productId, warehouseId }) => ({ productId, warehouseId }))),
          claim.scope,
          claim.key,
        ],
      );
      return answer[0]?.answer ? (reviveJson(answer[0].answer) as ReservationView) : null;
    };
    const work = async (): Promise<IntentClaim | { activation: Promise<ReservationView | null> }> => {
      const claimed = await intent;
      if (claimed.state !== "new") return claimed;
      deps.faultPoint("after_intent");
      const held = await holdAll(shards, id, groups, claimed.holdBy, (count) => {
        if (count === 1) deps.faultPoint("after_first_shard");
        if (count === groups.length) deps.faultPoint("after_holds");
      });
      // Activation needs no lock: it starts now and overlaps the lock's release.
      const activation = activate(held);
      activation.catch(() => undefined); // awaited below
      return { activation };
    };
    const keys = groups.flatMap((g) => g.items.map((item) => item.productId));
    let activation: Promise<ReservationView | null>;
    try {
      // The intent and the lock are taken at the same time (neither needs the other); the holds
      // wait for both.
      const done = groups.length > 1 ? await locks.withLocks(keys, work) : await work();
      if ("state" in done) {
        if (done.state === "done") return done.response as ReservationView;
        return awaitPrior(input, claim, groups);
      }
      activation = done.activation;
    } catch (e) {
      // The lock may have failed while the intent was being written: only an intent of ours needs
      // undoing, and a replay's answer does not need the lock at all.
      const claimed = await intent.catch(() => undefined);
      if (claimed?.state === "done") return claimed.response as ReservationView;
      if (claimed?.state === "pending") return awaitPrior(input, claim, groups);
      if (claimed?.state === "new") await compensate(id, claim, groups);
      throw e;
    }
    try {
      const view = await activation;
      if (view) return view;
      // The sweeper failed this intent while we worked (we were paused past its bound): undo (its
      // settlement row makes the sweeper do the same).
      await settleOnShards(shards, id, groups, "released", logger);
      throw tookTooLong();
    } catch (e) {
      await compensate(id, claim, groups);
      throw e;
    }
  }

  /**
   * Gives back whatever was held and fails the intent; if a shard is down, the sweeper finishes it.
   * A hold whose answer was lost may still commit until the hold window ends: the settlement row
   * falls due then, and the sweeper settles again.
   */
  async function compensate(id: string, claim: IdempotencyClaim, groups: ShardGroup[]): Promise<void> {
    const released = await settleOnShards(shards, id, groups, "released", logger);
    if (released === undefined) return; // stays pending: the sweeper fails it and releases the rest later
    await shards
      .forId(id, "res", "reservation_id")
      .fork()
      .transactional(async (tx) => {
        await repo.transition(tx, id, ["pending"], "failed", deps.intentTimeoutSeconds);
        await dropKey(tx, claim, id); // not a key a replay took over after the sweeper failed us
      })
      .catch((err: unknown) =>
        logger.warn({ err, reservationId: id }, "could not fail the intent; the sweeper will"),
      );
  }

  /** A replay of a key whose first request is running (or died): wait for its answer, or take over. */
  async function awaitPrior(
    input: ReserveInput,
    claim: IdempotencyClaim,
    groups: ShardGroup[],
  ): Promise<ReservationView> {
    const buyer = shards.forUser(input.userId);
    for (let attempt = 0; attempt < 60; attempt++) {
      await delay(50);
      const state = await buyer.fork().transactional((tx) => claimKey(tx, claim));
      if (state.state === "done") return state.response as ReservationView;
      if (state.state === "new") {
        // The first request failed and dropped the key, which we now hold: do the work ourselves.
        await buyer.fork().transactional((tx) => dropKey(tx, claim));
        return reserveAcrossShards(input, claim, groups);
      }
      // Whoever holds the key now: another replay may have taken it over from a dead saga.
      const ref = state.ref;
      const prior = ref ? await repo.findReservation(buyer.fork(), ref) : undefined;
      if (ref && prior?.status === "failed") {
        // Dropped only if still that dead saga's; otherwise the claim below finds the new owner.
        await buyer.fork().transactional((tx) => dropKey(tx, claim, ref));
        return reserveAcrossShards(input, claim, groups);
      }
    }
    throw inFlight();
  }

  return {
    async reserve(input: ReserveInput): Promise<ReservationView> {
      const { idempotencyKey, ...request } = input;
      const claim = claimFor(`buyer:${input.userId}`, "CreateReservation", idempotencyKey, request);
      const groups = groupByStockShard(shards, input.items);
      const buyerShard = shards.forUser(input.userId).index;
      const local = groups.length === 1 && groups[0]?.shard === buyerShard;
      return local ? reserveLocally(input, claim, groups) : reserveAcrossShards(input, claim, groups);
    },

    async get(userId: string, id: string): Promise<ReservationView> {
      return owned(shards.forId(id, "res", "reservation_id").fork(), userId, id);
    },

    async list(input: ListReservationsInput): Promise<{ items: ReservationView[]; nextPageToken: string }> {
      const listing = listingHash({ userId: input.userId, statuses: [...input.statuses].sort() });
      const token = decodePageToken(input.pageToken, listing);
      const rows = await repo.listReservations(shards.forUser(input.userId).fork(), {
        userId: input.userId,
        statuses: input.statuses,
        beforeId: (token?.after[0] as string | undefined) ?? null,
        limit: input.pageSize + 1,
      });
      return keysetPage(rows, input.pageSize, (r) => [r.id], listing);
    },

    /** Marks it released (committed first), then returns the stock; the sweeper finishes a crash. */
    async release(userId: string, id: string, idempotencyKey: string): Promise<ReservationView> {
      const em = shards.forId(id, "res", "reservation_id").fork();
      const claim = claimFor(`buyer:${userId}`, "ReleaseReservation", idempotencyKey, { userId, id });
      const view = await runIdempotent(em, claim, async (tx) => {
        const r = await owned(tx, userId, id, true);
        if (r.status === "confirmed")
          throw new DomainError(
            "reservation_expired",
            "reservation_id: the reservation is confirmed by an order",
          );
        if (r.status === "pending")
          throw new DomainError(
            "idempotency_in_flight",
            "reservation_id: the reservation is still being created, retry",
          );
        if (r.status === "active") await repo.transition(tx, id, ["active"], "released");
        return (await repo.findReservation(tx, id)) as ReservationView;
      });
      const groups = groupByStockShard(shards, view.items);
      if ((await settleOnShards(shards, id, groups, "released", logger)) !== undefined)
        await repo
          .settled(em, [id])
          .catch((err: unknown) =>
            logger.warn({ err, reservationId: id }, "could not clear the settlement; the sweeper will"),
          );
      return view;
    },

    async extend(
      userId: string,
      id: string,
      ttlSeconds: number,
      idempotencyKey: string,
    ): Promise<ReservationView> {
      const em = shards.forId(id, "res", "reservation_id").fork();
      const claim = claimFor(`buyer:${userId}`, "ExtendReservation", idempotencyKey, {
        userId,
        id,
        ttlSeconds,
      });
      return runIdempotent(em, claim, async (tx) => {
        const r = await owned(tx, userId, id, true);
        if (!(await repo.extend(tx, id, ttlSeconds))) {
          const why = r.status === "active" ? "expired" : r.status;
          throw new DomainError(
            "reservation_expired",
            `reservation_id: the reservation is ${why} and cannot be extended`,
            { field: "reservation_id" },
          );
        }
        return (await repo.findReservation(tx, id)) as ReservationView;
      });
    },
  };
}
