import { setTimeout as delay } from "node:timers/promises";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import { ReservationService, ReservationStatus } from "../../gen/shop/reservation/v1/reservation_pb.js";
import type { App } from "../../src/app.js";
import { startTestApp, unique } from "../harness/app.js";
import { client, transportFor } from "../harness/clients.js";
import { expectError } from "../harness/errors.js";
import { type RedisNodes, startRedisNodes } from "../harness/redis-nodes.js";
import { seedProduct } from "../inventory/seed.js";
import { userOnShard } from "../reservation/seed.js";

// Own Redis quorum (nodes are killed here); the shared shard databases.
let nodes: RedisNodes;
let app: App & { port: number };

beforeAll(async () => {
  nodes = await startRedisNodes(3);
  app = await startTestApp({ redisUrls: nodes.urls });
});
afterAll(async () => {
  await app?.shutdown();
  await nodes?.stopAll();
});

/** A hang guard, not a latency target: a call that waits on dead nodes must not stall. */
const HANG_GUARD_MS = 5000;

describe("reservations when Redis lock nodes fail", () => {
  const inv = () => client(InventoryService, transportFor("grpc-h2c", app.port));
  const res = () => client(ReservationService, transportFor("grpc-h2c", app.port));
  const available = async (productId: string) =>
    (await inv().getProduct({ productId })).product?.stock[0]?.available;
  const threeShardProducts = (stock: number) =>
    Promise.all(
      [0, 1, 2].map((s) => seedProduct(inv(), userOnShard(app, s, "seller"), { stock: { main: stock } })),
    );
  const liveHolds = async (reservationId: string) => {
    let n = 0;
    for (const shard of app.shards.shards) {
      const rows = await shard
        .fork()
        .execute("select count(*)::int as n from stock_holds where reservation_id = ? and status = 'held'", [
          reservationId,
        ]);
      n += Number(rows[0]?.n);
    }
    return n;
  };

  it("keeps taking cross-shard reservations with 1 of 3 nodes down", async () => {
    await nodes.stop(0);
    const ps = await threeShardProducts(5);
    const buyer = userOnShard(app, 1, "buyer");
    for (let i = 0; i < 3; i++) {
      const { reservation } = await res().createReservation(
        {
          userId: buyer,
          items: ps.map((p) => ({ productId: p.id, quantity: 1n })),
          idempotencyKey: unique("k"),
        },
        { timeoutMs: HANG_GUARD_MS },
      );
      expect(reservation?.status).toBe(ReservationStatus.ACTIVE);
      expect(await liveHolds(reservation?.id ?? "")).toBe(3);
    }
    for (const p of ps) expect(await available(p.id)).toBe(2n);
    expect(await app.locks.quorumReachable()).toBe(true);
  });

  it("fails cross-shard reservations fast with UNAVAILABLE with 2 of 3 down, holding nothing", async () => {
    await nodes.stop(0);
    await nodes.stop(1);
    const ps = await threeShardProducts(5);
    const buyer = userOnShard(app, 2, "buyer");
    expect(await app.locks.quorumReachable()).toBe(false);

    const started = Date.now();
    const err = await expectError(
      res().createReservation(
        {
          userId: buyer,
          items: ps.map((p) => ({ productId: p.id, quantity: 2n })),
          idempotencyKey: unique("k"),
        },
        { timeoutMs: 2 * HANG_GUARD_MS },
      ),
      Code.Unavailable,
    );
    expect(Date.now() - started).toBeLessThan(HANG_GUARD_MS);
    expect(err.rawMessage).toContain("stock locks unavailable");

    // Nothing moved: every product has all its stock, the attempt holds nothing and is not left PENDING.
    for (const p of ps) expect(await available(p.id)).toBe(5n);
    const { reservations } = await res().listReservations({ userId: buyer });
    expect(reservations.map((r) => r.status)).toEqual([ReservationStatus.FAILED]);
    expect(await liveHolds(reservations[0]?.id ?? "")).toBe(0);
    expect((await inv().checkStockInvariant({})).violations).toEqual([]);

    // A buyer whose stock is all on their own shard takes no lock: still served.
    const local = userOnShard(app, 0, "buyer");
    const p0 = await seedProduct(inv(), userOnShard(app, 0, "seller"), { stock: { main: 3 } });
    const { reservation } = await res().createReservation(
      { userId: local, items: [{ productId: p0.id, quantity: 2n }], idempotencyKey: unique("k") },
      { timeoutMs: HANG_GUARD_MS },
    );
    expect(reservation?.status).toBe(ReservationStatus.ACTIVE);
    expect(await available(p0.id)).toBe(1n);
    const released = await res().releaseReservation(
      { userId: local, reservationId: reservation?.id ?? "", idempotencyKey: unique("k") },
      { timeoutMs: HANG_GUARD_MS },
    );
    expect(released.reservation?.status).toBe(ReservationStatus.RELEASED);
    expect(await available(p0.id)).toBe(3n);
  });

  it("takes cross-shard reservations again once the nodes are back", async () => {
    await nodes.start(0);
    await nodes.start(1);
    // The clients reconnect on their own (backoff up to 2 s); wait for the quorum, bounded.
    const deadline = Date.now() + 10_000;
    while (!(await app.locks.quorumReachable())) {
      if (Date.now() > deadline) expect.fail("the lock quorum did not come back within 10 s");
      await delay(100);
    }
    const ps = await threeShardProducts(5);
    const { reservation } = await res().createReservation(
      {
        userId: userOnShard(app, 0, "buyer"),
        items: ps.map((p) => ({ productId: p.id, quantity: 5n })),
        idempotencyKey: unique("k"),
      },
      { timeoutMs: HANG_GUARD_MS },
    );
    expect(reservation?.status).toBe(ReservationStatus.ACTIVE);
    for (const p of ps) expect(await available(p.id)).toBe(0n);
    expect((await inv().checkStockInvariant({})).violations).toEqual([]);
  });
});
