import { setTimeout as delay } from "node:timers/promises";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import { ReservationService, ReservationStatus } from "../../gen/shop/reservation/v1/reservation_pb.js";
import type { App } from "../../src/app.js";
import { startTestApp, unique } from "../harness/app.js";
import { client, transportFor } from "../harness/clients.js";
import { expectError } from "../harness/errors.js";
import { migrateShards } from "../harness/global-setup.js";
import { createShardDatabases, dropShardDatabases } from "../harness/shard-databases.js";
import { seedProduct } from "../inventory/seed.js";
import { userOnShard } from "./seed.js";

// Own databases: no other test file's sweeper may expire these reservations first (the counts are ours).
const prefix = `expiry_${process.pid}`;
const SWEEP_MS = 500;
const TTL_S = 2;
let urls: string[] = [];
let app: App & { port: number };

beforeAll(async () => {
  urls = await createShardDatabases(undefined, 3, prefix);
  await migrateShards(urls);
  app = await startTestApp({ shardUrls: urls, sweepIntervalMs: SWEEP_MS });
});
afterAll(async () => {
  await app?.shutdown();
  if (urls.length > 0) await dropShardDatabases(urls);
});

describe("reservation expiry", () => {
  const inv = () => client(InventoryService, transportFor("grpc-h2c", app.port));
  const res = () => client(ReservationService, transportFor("grpc-h2c", app.port));
  const available = async (productId: string) =>
    (await inv().getProduct({ productId })).product?.stock[0]?.available;

  /**
   * Polls until the reservation is EXPIRED and every product is back to `stock`. The deadline is the
   * assertion: TTL + one sweep interval + 1 s after the create answered (expires_at is set before that).
   */
  async function expectExpiredInTime(
    buyer: string,
    id: string,
    productIds: string[],
    stock: bigint,
    answeredAt: number,
  ) {
    const deadline = answeredAt + TTL_S * 1000 + SWEEP_MS + 1000;
    let last: { status?: ReservationStatus; available: (bigint | undefined)[] } = { available: [] };
    while (Date.now() < deadline) {
      const r = (await res().getReservation({ userId: buyer, reservationId: id })).reservation;
      last = { status: r?.status, available: await Promise.all(productIds.map(available)) };
      if (last.status === ReservationStatus.EXPIRED && last.available.every((a) => a === stock)) return;
      await delay(100);
    }
    expect.fail(
      `not expired with stock back within ${deadline - answeredAt} ms: status ${
        last.status === undefined ? "?" : ReservationStatus[last.status]
      }, available ${last.available.join(",")}`,
    );
  }

  it("expires a single-shard reservation and gives the stock back; extend and release then behave", async () => {
    const buyer = userOnShard(app, 0, "buyer");
    const p = await seedProduct(inv(), userOnShard(app, 0, "seller"), { stock: { main: 5 } });
    const before = { ...app.sweeper.counts };
    const { reservation } = await res().createReservation({
      userId: buyer,
      items: [{ productId: p.id, quantity: 2n }],
      ttl: { seconds: BigInt(TTL_S) },
      idempotencyKey: unique("k"),
    });
    const answeredAt = Date.now();
    const id = reservation?.id ?? "";
    expect(reservation?.status).toBe(ReservationStatus.ACTIVE);
    expect(await available(p.id)).toBe(3n);

    await expectExpiredInTime(buyer, id, [p.id], 5n, answeredAt);
    expect(app.sweeper.counts.expired).toBeGreaterThan(before.expired);
    expect(app.sweeper.counts.passes).toBeGreaterThan(before.passes);
    // Its stock is back, so nothing is left owed (hold_settlements).
    const owed = await app.shards
      .forId(id, "res", "reservation_id")
      .fork()
      .execute("select 1 from hold_settlements where reservation_id = ?", [id]);
    expect(owed).toEqual([]);

    const expired = (await res().getReservation({ userId: buyer, reservationId: id })).reservation;
    // ExtendReservation on an expired reservation: FAILED_PRECONDITION naming reservation_id.
    const err = await expectError(
      res().extendReservation({
        userId: buyer,
        reservationId: id,
        ttl: { seconds: 60n },
        idempotencyKey: unique("k"),
      }),
      Code.FailedPrecondition,
      "reservation_id",
    );
    expect(err.rawMessage).toContain("expired");
    // ReleaseReservation on an expired one answers it unchanged, and gives nothing back twice.
    const released = await res().releaseReservation({
      userId: buyer,
      reservationId: id,
      idempotencyKey: unique("k"),
    });
    expect(released.reservation?.status).toBe(ReservationStatus.EXPIRED);
    expect(released.reservation?.version).toBe(expired?.version);
    expect(released.reservation?.updateTime).toEqual(expired?.updateTime);
    expect(await available(p.id)).toBe(5n);
    const after = (await res().getReservation({ userId: buyer, reservationId: id })).reservation;
    expect(after?.status).toBe(ReservationStatus.EXPIRED);
    expect(after?.version).toBe(expired?.version);
    expect((await inv().checkStockInvariant({})).violations).toEqual([]);
  });

  it("expires a reservation holding stock on three shards and gives every item back", async () => {
    const buyer = userOnShard(app, 1, "buyer");
    const ps = await Promise.all(
      [0, 1, 2].map((s) => seedProduct(inv(), userOnShard(app, s, "seller"), { stock: { main: 4 } })),
    );
    const before = app.sweeper.counts.expired;
    const { reservation } = await res().createReservation({
      userId: buyer,
      items: ps.map((p) => ({ productId: p.id, quantity: 3n })),
      ttl: { seconds: BigInt(TTL_S) },
      idempotencyKey: unique("k"),
    });
    const answeredAt = Date.now();
    expect(reservation?.status).toBe(ReservationStatus.ACTIVE);
    for (const p of ps) expect(await available(p.id)).toBe(1n);

    const ids = ps.map((p) => p.id);
    await expectExpiredInTime(buyer, reservation?.id ?? "", ids, 4n, answeredAt);
    expect(app.sweeper.counts.expired).toBeGreaterThan(before);
    // No live hold is left anywhere, and the ledger agrees with the stock columns.
    for (const shard of app.shards.shards) {
      const live = await shard
        .fork()
        .execute("select count(*)::int as n from stock_holds where reservation_id = ? and status = 'held'", [
          reservation?.id,
        ]);
      expect(live[0]?.n).toBe(0);
    }
    expect((await inv().checkStockInvariant({})).violations).toEqual([]);
    // The stock is free for someone else again.
    const again = await res().createReservation({
      userId: userOnShard(app, 2, "buyer"),
      items: ps.map((p) => ({ productId: p.id, quantity: 4n })),
      idempotencyKey: unique("k"),
    });
    expect(again.reservation?.status).toBe(ReservationStatus.ACTIVE);
  });
});
