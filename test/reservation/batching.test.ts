import { setTimeout as delay } from "node:timers/promises";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import { ReservationService, ReservationStatus } from "../../gen/shop/reservation/v1/reservation_pb.js";
import type { App } from "../../src/app.js";
import { claimFor } from "../../src/idempotency/idempotency.js";
import { createReserveBatcher, type LocalReserve } from "../../src/reservation/batcher.js";
import { newId } from "../../src/shard/ids.js";
import { bucketOfUser } from "../../src/shard/router.js";
import type { Shard } from "../../src/shard/shards.js";
import { startTestApp, unique } from "../harness/app.js";
import { client, transportFor } from "../harness/clients.js";
import { expectError } from "../harness/errors.js";
import { seedProduct } from "../inventory/seed.js";
import { userOnShard } from "./seed.js";

let app: App & { port: number };
beforeAll(async () => {
  app = await startTestApp();
});
afterAll(async () => {
  await app?.shutdown();
});

const inv = () => client(InventoryService, transportFor("grpc-h2c", app.port));
const res = () => client(ReservationService, transportFor("grpc-h2c", app.port));

describe("single-shard reservations are coalesced per shard (shop_reserve)", () => {
  /** A request as the service makes it, for `quantity` of `productId`. */
  function request(buyer: string, productId: string, quantity: number, key = unique("k")): LocalReserve {
    const bucket = bucketOfUser(buyer);
    const items = [{ productId, warehouseId: "", quantity }];
    const claim = claimFor(`buyer:${buyer}`, "CreateReservation", key, {
      userId: buyer,
      items,
      ttlSeconds: 60,
    });
    return {
      id: newId("res", bucket),
      bucket,
      userId: buyer,
      scope: claim.scope,
      key: claim.key,
      requestHash: claim.requestHash,
      ttlSeconds: 60,
      items: items.map((i) => ({ ...i, movementId: newId("mov", bucket) })),
    };
  }

  it("runs what queues behind a busy lane as ONE statement, each request all or nothing on its own", async () => {
    const buyer = userOnShard(app, 0, "buyer");
    const p = await seedProduct(inv(), userOnShard(app, 0, "seller"), { stock: { main: 40 } });
    const shard = app.shards.shards[0] as Shard;
    const batcher = createReserveBatcher({ writers: 1, maxBatch: 64 });
    const replayed = request(buyer, p.id, 1);
    const mismatched = { ...request(buyer, p.id, 2, replayed.key), id: newId("res", bucketOfUser(buyer)) };
    const version = async () =>
      Number(
        (await shard.sql<{ version: string }>("select version from stock where product_id = $1", [p.id]))[0]
          ?.version,
      );
    const versionBefore = await version();
    const before = shard.queryCount();
    // Submitted in one tick: the first goes alone, the other 31 wait for it and then share one statement.
    const outcomes = await Promise.all([
      batcher.submit(shard, request(buyer, p.id, 1)),
      ...Array.from({ length: 27 }, () => batcher.submit(shard, request(buyer, p.id, 1))),
      batcher.submit(shard, replayed),
      batcher.submit(shard, replayed), // the same key again, in the same statement: a replay
      batcher.submit(shard, mismatched), // the same key with another request
      batcher.submit(shard, request(buyer, p.id, 20)), // only 12 left by then: short, nothing written
    ]);
    expect(shard.queryCount() - before).toBe(2);
    // The hot row was written once per statement (the lot's total), not once per buyer.
    expect((await version()) - versionBefore).toBe(2);
    const states = outcomes.map((o) => o.state);
    expect(states.filter((s) => s === "done")).toHaveLength(29);
    expect(outcomes[29]).toMatchObject({ state: "prior", hash: replayed.requestHash });
    expect((outcomes[29] as { response: unknown }).response).toEqual(
      (outcomes[28] as { response: unknown }).response,
    );
    expect(outcomes[30]).toMatchObject({ state: "prior" });
    expect((outcomes[30] as { hash: string }).hash).not.toBe(mismatched.requestHash);
    expect(outcomes[31]).toEqual({
      state: "short",
      short: [{ productId: p.id, warehouseId: "", requested: 20, available: 11 }],
    });
    const { product } = await inv().getProduct({ productId: p.id });
    expect(product?.stock[0]).toMatchObject({ available: 11n, held: 29n });
    expect((await inv().checkStockInvariant({})).violations).toEqual([]);
  });

  it("a reservation waiting on a locked stock row past its deadline is stopped and never commits", async () => {
    const buyer = userOnShard(app, 1, "buyer");
    const p = await seedProduct(inv(), userOnShard(app, 1, "seller"), { stock: { main: 10 } });
    const shard = app.shards.forId(p.id, "prd", "product_id");
    let release = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const locked = shard.fork().transactional(async (tx) => {
      await tx.execute("select 1 from stock where product_id = ? for update", [p.id]);
      await held;
    });
    await delay(100);
    const key = unique("k");
    const ask = () =>
      res().createReservation(
        { userId: buyer, items: [{ productId: p.id, quantity: 3n }], idempotencyKey: key },
        { timeoutMs: 400 },
      );
    await expectError(ask(), Code.DeadlineExceeded);
    const waiting = await shard
      .fork()
      .execute<{ n: string }[]>(
        "select count(*) as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
      );
    expect(waiting[0]?.n).toBe("0"); // lock_timeout stopped the statement before the deadline
    release();
    await locked;
    await delay(200);
    const { product } = await inv().getProduct({ productId: p.id });
    expect(product?.stock[0]?.available).toBe(10n);
    // Nothing of the first try stayed behind, its key included: the retry makes the reservation.
    const retry = await ask();
    expect(retry.reservation?.status).toBe(ReservationStatus.ACTIVE);
    expect((await inv().getProduct({ productId: p.id })).product?.stock[0]?.available).toBe(7n);
  });
});
