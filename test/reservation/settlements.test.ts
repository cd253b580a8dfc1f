import { setTimeout as delay } from "node:timers/promises";
import { Code } from "@connectrpc/connect";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import { ReservationService } from "../../gen/shop/reservation/v1/reservation_pb.js";
import type { App } from "../../src/app.js";
import { DomainError } from "../../src/errors.js";
import { groupByStockShard, holdOnShard } from "../../src/reservation/holds.js";
import * as reservationRepo from "../../src/reservation/reservation.repository.js";
import { createSweeper } from "../../src/reservation/sweeper.js";
import { newId } from "../../src/shard/ids.js";
import { startTestApp, unique } from "../harness/app.js";
import { client, transportFor } from "../harness/clients.js";
import { expectError } from "../harness/errors.js";
import { migrateShards } from "../harness/global-setup.js";
import { everyShard } from "../harness/processes.js";
import { createShardDatabases, dropShardDatabases, openTestShards } from "../harness/shard-databases.js";
import { seedProduct } from "../inventory/seed.js";
import { userOnShard } from "./seed.js";

/*
 * What a reservation owes back when it ends (hold_settlements, migration 0006), and the saga's hold
 * window: the sweeper settles what a dead process left, and a hold that lands after its saga gave up
 * is given back once the window has closed. Own databases and a sweeper run by hand.
 */

const prefix = `settle_${process.pid}`;
const INTENT_TIMEOUT_MS = 2_000; // a 1 s hold window
let urls: string[] = [];
let app: App & { port: number };

beforeAll(async () => {
  urls = await createShardDatabases(undefined, 3, prefix);
  await migrateShards(urls);
  app = await startTestApp({
    shardUrls: urls,
    sweepIntervalMs: 3_600_000,
    intentTimeoutMs: INTENT_TIMEOUT_MS,
  });
});
afterAll(async () => {
  await app?.shutdown();
  if (urls.length > 0) await dropShardDatabases(urls);
});

describe("hold settlements and the hold window", () => {
  const inv = () => client(InventoryService, transportFor("grpc-h2c", app.port));
  const res = () => client(ReservationService, transportFor("grpc-h2c", app.port));
  const available = async (productId: string) =>
    (await inv().getProduct({ productId })).product?.stock[0]?.available;
  const settlements = () =>
    everyShard(
      app.shards,
      "select reservation_id, extract(epoch from due_at - r.created_at) * 1000 as due_ms from hold_settlements join reservations r on r.id = reservation_id",
    );
  const liveHoldsOf = (id: string) =>
    everyShard(
      app.shards,
      "select product_id from stock_holds where reservation_id = ? and status = 'held'",
      [id],
    );

  it("a release gives the stock back and leaves nothing owed", async () => {
    const buyer = userOnShard(app, 0, "buyer");
    const p = await seedProduct(inv(), userOnShard(app, 1, "seller"), { stock: { main: 5 } });
    const { reservation } = await res().createReservation({
      userId: buyer,
      items: [{ productId: p.id, quantity: 2n }],
      idempotencyKey: unique("k"),
    });
    const id = reservation?.id ?? "";
    await res().releaseReservation({ userId: buyer, reservationId: id, idempotencyKey: unique("k") });
    expect(await available(p.id)).toBe(5n);
    expect((await settlements()).filter((s) => s.reservation_id === id)).toEqual([]);
  });

  it("a saga that fails owes its holds until its window closes, and a hold that lands late is given back", async () => {
    const buyer = userOnShard(app, 0, "buyer");
    const late = await seedProduct(inv(), userOnShard(app, 1, "seller"), { stock: { main: 1 } });
    const scarce = await seedProduct(inv(), userOnShard(app, 2, "seller"), { stock: { main: 1 } });
    await expectError(
      res().createReservation({
        userId: buyer,
        items: [
          { productId: late.id, quantity: 2n },
          { productId: scarce.id, quantity: 3n },
        ],
        idempotencyKey: unique("k"),
      }),
      Code.FailedPrecondition,
    );
    const owed = (await settlements()).filter((s) => s.shard === 0);
    expect(owed).toHaveLength(1);
    const id = String(owed[0]?.reservation_id);
    // Due when the whole intent bound has passed: no hold of the saga can commit after its window.
    expect(Number(owed[0]?.due_ms)).toBeGreaterThanOrEqual(INTENT_TIMEOUT_MS);

    // Stock arrives, and a hold of that saga whose answer was lost (it was short when the saga
    // gave up, say the caller's connection dropped) commits now, inside the window.
    await inv().adjustStock({
      productId: late.id,
      warehouseId: "main",
      delta: 1n,
      reason: "delivery",
      idempotencyKey: unique("k"),
    });
    const [window] = await app.shards
      .forId(id, "res", "reservation_id")
      .fork()
      .execute("select (created_at + interval '1 second')::text as hold_by from reservations where id = ?", [
        id,
      ]);
    const [group] = groupByStockShard(app.shards, [{ productId: late.id, warehouseId: "", quantity: 2 }]);
    if (!group) throw new Error("no group");
    await holdOnShard(app.shards, id, group, String(window?.hold_by));
    expect(await liveHoldsOf(id)).toHaveLength(1);
    expect(await available(late.id)).toBe(0n);

    // Not yet due: the sweeper leaves it.
    await app.sweeper.runOnce();
    expect(await liveHoldsOf(id)).toHaveLength(1);

    // Past the window and its margin: settled and forgotten.
    await delay(INTENT_TIMEOUT_MS);
    await app.sweeper.runOnce();
    expect(await liveHoldsOf(id)).toEqual([]);
    expect(await available(late.id)).toBe(2n);
    expect((await settlements()).filter((s) => s.reservation_id === id)).toEqual([]);
    expect((await inv().checkStockInvariant({})).violations).toEqual([]);
  });

  it("keeps a settlement whose stock shard is down and settles the ones after it", async () => {
    const buyer = userOnShard(app, 0, "buyer");
    const onShard1 = await seedProduct(inv(), userOnShard(app, 1, "seller"), { stock: { main: 2 } });
    const onShard2 = await seedProduct(inv(), userOnShard(app, 2, "seller"), { stock: { main: 2 } });
    const ids: string[] = [];
    for (const p of [onShard1, onShard2]) {
      const { reservation } = await res().createReservation({
        userId: buyer,
        items: [{ productId: p.id, quantity: 2n }],
        idempotencyKey: unique("k"),
      });
      ids.push(reservation?.id ?? "");
    }
    // Both released, and their processes died before giving the stock back.
    for (const id of ids)
      await app.shards
        .forId(id, "res", "reservation_id")
        .fork()
        .transactional((tx) => reservationRepo.transition(tx, id, ["active"], "released"));

    // A sweeper that cannot reach shard 1, one settlement per page: the first stays, the second goes.
    const [url0, , url2] = urls as [string, string, string];
    const broken = await openTestShards([url0, "postgres://postgres@127.0.0.1:1/down", url2]);
    try {
      const sweeper = createSweeper(
        { shards: broken, logger: pino({ level: "silent" }) },
        { intervalMs: 3_600_000, intentTimeoutSeconds: INTENT_TIMEOUT_MS / 1000, batchSize: 1 },
      );
      await sweeper.runOnce();
    } finally {
      await broken.close();
    }
    expect(await available(onShard1.id)).toBe(0n);
    expect(await available(onShard2.id)).toBe(2n);
    expect((await settlements()).map((s) => s.reservation_id)).toEqual([ids[0]]);

    // Shard 1 back: the next pass finishes it.
    await app.sweeper.runOnce();
    expect(await available(onShard1.id)).toBe(2n);
    expect(await settlements()).toEqual([]);
    expect((await inv().checkStockInvariant({})).violations).toEqual([]);
  });

  it("refuses a hold once the window has passed, and writes nothing", async () => {
    const p = await seedProduct(inv(), userOnShard(app, 1, "seller"), { stock: { main: 5 } });
    const [group] = groupByStockShard(app.shards, [{ productId: p.id, warehouseId: "", quantity: 1 }]);
    if (!group) throw new Error("no group");
    const id = newId("res", group.bucket);
    const past = new Date(Date.now() - 1000).toISOString();
    const err = await holdOnShard(app.shards, id, group, past).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DomainError);
    expect((err as DomainError).reason).toBe("deadline_exceeded");
    expect(await liveHoldsOf(id)).toEqual([]);
    expect(await available(p.id)).toBe(5n);
    // The same hold inside its window is taken.
    const soon = new Date(Date.now() + 5000).toISOString();
    expect(await holdOnShard(app.shards, id, group, soon)).toMatchObject([{ productId: p.id, quantity: 1 }]);
    expect(await available(p.id)).toBe(4n);
  });
});
