import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { InventoryService, type Product } from "../../gen/shop/inventory/v1/inventory_pb.js";
import { ReservationService, ReservationStatus } from "../../gen/shop/reservation/v1/reservation_pb.js";
import type { App } from "../../src/app.js";
import { SAGA_FAULT_POINTS } from "../../src/config.js";
import * as reservationRepo from "../../src/reservation/reservation.repository.js";
import { createSweeper } from "../../src/reservation/sweeper.js";
import { startTestApp, unique } from "../harness/app.js";
import { bearer } from "../harness/auth.js";
import { client, transportFor } from "../harness/clients.js";
import { rejection } from "../harness/errors.js";
import { migrateShards } from "../harness/global-setup.js";
import {
  killStartedProcesses,
  type MainProcess,
  everyShard as shardRows,
  startMain,
} from "../harness/processes.js";
import { type RedisNodes, startRedisNodes } from "../harness/redis-nodes.js";
import { createShardDatabases, dropShardDatabases } from "../harness/shard-databases.js";
import { until } from "../harness/wait.js";
import { seedProduct } from "../inventory/seed.js";
import { userOnShard } from "../reservation/seed.js";

/*
 * A cross-shard reservation saga killed (SIGKILL, by FAULT_POINT) at each of its steps, in a real
 * process on its own databases and Redis quorum; then a normal process on the same databases must
 * repair it: nothing left PENDING, no orphan hold, the invariant intact, and the same request
 * retried with the same idempotency key succeeds.
 */

const prefix = `crash_${process.pid}`;
const INITIAL = 10n;
const QTY = 2n;
let urls: string[] = [];
let redis: RedisNodes | undefined;
/** An in-process app on the same databases: seeds products and reads the shards directly. Never sweeps. */
let app: App & { port: number };
let products: Product[] = [];
/** Reservations this file made ACTIVE on purpose (the successful retries). */
const deliberateActive = new Set<string>();

beforeAll(async () => {
  urls = await createShardDatabases(undefined, 3, prefix);
  await migrateShards(urls);
  redis = await startRedisNodes(3);
  app = await startTestApp({ shardUrls: urls, redisUrls: redis.urls, sweepIntervalMs: 3_600_000 });
  const inv = client(InventoryService, transportFor("grpc-h2c", app.port));
  products = await Promise.all(
    [0, 1, 2].map((s) =>
      seedProduct(inv, userOnShard(app, s, "seller"), { stock: { main: Number(INITIAL) } }),
    ),
  );
});
afterAll(async () => {
  await app?.shutdown();
  await redis?.stopAll();
  if (urls.length > 0) await dropShardDatabases(urls);
});

afterEach(killStartedProcesses);

/** `npm start`'s entry point as a child process on this file's databases and Redis nodes. */
function startOnTheseShards(env: Record<string, string>): MainProcess {
  return startMain({
    SHARD_URLS: urls.join(","),
    REDIS_URLS: (redis?.urls ?? []).join(","),
    INTENT_TIMEOUT_MS: "1000",
    SWEEP_INTERVAL_MS: "300",
    // A killed holder's Redlock expires after this, so the retry is not refused as contention.
    LOCK_TTL_MS: "1000",
    ...env,
  });
}

const rpc = (port: number) => {
  const transport = createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}`, interceptors: [bearer()] });
  return { res: createClient(ReservationService, transport), inv: createClient(InventoryService, transport) };
};

const everyShard = (sql: string, params: unknown[] = []) => shardRows(app.shards, sql, params);

const openReservations = () =>
  everyShard("select id, status from reservations where status in ('pending', 'active')");
const liveHolds = () =>
  everyShard("select reservation_id, product_id, quantity from stock_holds where status = 'held'");
const statusOf = async (id: string) =>
  String((await everyShard("select status from reservations where id = ?", [id]))[0]?.status);

/**
 * The state after a repair: every reservation is terminal except the deliberate ACTIVE ones, every
 * live hold belongs to one of those, the invariant holds, and available = initial - live holds.
 */
async function expectRepaired(inv: Client<typeof InventoryService>): Promise<void> {
  const open = await openReservations();
  for (const r of open) {
    expect(deliberateActive.has(String(r.id)), `${r.id} is ${r.status}`).toBe(true);
    expect(r.status).toBe("active");
  }
  const holds = await liveHolds();
  const orphans = holds.filter((h) => !deliberateActive.has(String(h.reservation_id)));
  expect(orphans).toEqual([]);
  for (const id of deliberateActive)
    expect(holds.filter((h) => h.reservation_id === id)).toHaveLength(products.length);
  expect((await inv.checkStockInvariant({})).violations).toEqual([]);
  for (const p of products) {
    const held = holds
      .filter((h) => h.product_id === p.id)
      .reduce((sum, h) => sum + BigInt(Number(h.quantity)), 0n);
    const { product } = await inv.getProduct({ productId: p.id });
    expect(product?.stock[0]?.available, p.id).toBe(INITIAL - held);
    expect(product?.stock[0]?.held, p.id).toBe(held);
  }
}

/**
 * Which stock shards the crashed saga had taken holds on when it died. The shards' holds run at
 * once, so after the first one commits the others may or may not have: any non-empty subset.
 */
const HELD_AT_CRASH: Record<(typeof SAGA_FAULT_POINTS)[number], (shards: number[]) => boolean> = {
  after_intent: (s) => s.length === 0,
  after_first_shard: (s) => s.length >= 1 && s.every((i) => [0, 1, 2].includes(i)),
  after_holds: (s) => s.join() === "0,1,2",
};

describe("a reservation saga killed mid-way", () => {
  it.each(SAGA_FAULT_POINTS)(
    "is repaired after a crash at %s, and the retry with its key succeeds",
    async (point) => {
      const buyer = userOnShard(app, 1, `buyer-${point}`);
      const request = {
        userId: buyer,
        items: products.map((p) => ({ productId: p.id, quantity: QTY })),
        idempotencyKey: unique("k"),
      };

      // 1. The faulty process dies at the fault point; the caller sees the call fail.
      const faulty = startOnTheseShards({ FAULT_POINT: point });
      const faultyPort = await faulty.port;
      await rejection(rpc(faultyPort).res.createReservation(request, { timeoutMs: 15_000 }));
      const [, signal] = await faulty.exited;
      expect(signal).toBe("SIGKILL");
      expect(faulty.log()).toContain(`"point":"${point}"`);

      // What the crash left: the intent still PENDING, holds on the shards done before the point.
      const mine = await everyShard("select id, status from reservations where user_id = ?", [buyer]);
      expect(mine.map((r) => r.status)).toEqual(["pending"]);
      const crashedId = String(mine[0]?.id);
      const heldOn = (await liveHolds())
        .filter((h) => h.reservation_id === crashedId)
        .map((h) => h.shard)
        .sort();
      expect(HELD_AT_CRASH[point](heldOn), `held on shards [${heldOn.join()}]`).toBe(true);

      // 2. A normal process on the same databases: its sweeper fails the intent and releases the holds.
      const normal = startOnTheseShards({});
      const { res, inv } = rpc(await normal.port);
      await until(
        "repair by the sweeper",
        async () => {
          const pending = (await openReservations()).filter((r) => r.status === "pending");
          const holds = (await liveHolds()).filter((h) => !deliberateActive.has(String(h.reservation_id)));
          return pending.length === 0 && holds.length === 0;
        },
        10_000,
        100,
      );
      const failed = (await res.getReservation({ userId: buyer, reservationId: crashedId })).reservation;
      expect(failed?.status).toBe(ReservationStatus.FAILED);
      await expectRepaired(inv);

      // 3. The client retries with the same key: the replay finds the failed intent and takes over.
      const retried = (await res.createReservation(request, { timeoutMs: 15_000 })).reservation;
      expect(retried?.status).toBe(ReservationStatus.ACTIVE);
      expect(retried?.id).not.toBe(crashedId);
      expect(retried?.items.map((i) => i.productId).sort()).toEqual(products.map((p) => p.id).sort());
      deliberateActive.add(retried?.id ?? "");
      // ...and a further replay answers that same reservation, with no second effect.
      const replayed = (await res.createReservation(request, { timeoutMs: 15_000 })).reservation;
      expect(replayed?.id).toBe(retried?.id);
      expect(await statusOf(crashedId)).toBe("failed");
      await expectRepaired(inv);

      normal.child.kill("SIGTERM");
      const [code] = await normal.exited;
      expect(code).toBe(0);
    },
  );

  /** Live reservations on shard 0 whose holds are older than the intent bound: more than one sweep batch. */
  async function liveBehind(inv: Client<typeof InventoryService>, res: Client<typeof ReservationService>) {
    const live = await seedProduct(inv, userOnShard(app, 0, "seller"), { stock: { main: 10 } });
    for (let i = 0; i < 4; i++) {
      const { reservation } = await res.createReservation({
        userId: userOnShard(app, 0, "buyer"),
        items: [{ productId: live.id, quantity: 1n }],
        idempotencyKey: unique("k"),
      });
      deliberateActive.add(reservation?.id ?? "");
    }
    return live;
  }

  /** A reservation of all 3 units of a new product on shard 0, and its id. */
  async function reserveVictim(inv: Client<typeof InventoryService>, res: Client<typeof ReservationService>) {
    const victim = await seedProduct(inv, userOnShard(app, 0, "seller"), { stock: { main: 3 } });
    const { reservation } = await res.createReservation({
      userId: userOnShard(app, 0, "buyer"),
      items: [{ productId: victim.id, quantity: 3n }],
      idempotencyKey: unique("k"),
    });
    return { victim, id: reservation?.id ?? "" };
  }

  const sweeperOf = (batchSize: number) =>
    createSweeper(
      { shards: app.shards, logger: pino({ level: "silent" }) },
      { intervalMs: 3_600_000, intentTimeoutSeconds: 0, batchSize },
    );

  it("leaves no orphan when a release dies between its commit and the stock return, even behind many live holds", async () => {
    const inv = client(InventoryService, transportFor("grpc-h2c", app.port));
    const res = client(ReservationService, transportFor("grpc-h2c", app.port));
    const live = await liveBehind(inv, res);
    // What ReleaseReservation commits before it gives the stock back, and then the process died.
    const { victim, id } = await reserveVictim(inv, res);
    const buyerShard = app.shards.forId(id, "res", "reservation_id");
    await buyerShard.fork().transactional((tx) => reservationRepo.transition(tx, id, ["active"], "released"));
    expect((await liveHolds()).filter((h) => h.reservation_id === id)).toHaveLength(1);
    expect(await everyShard("select reservation_id from hold_settlements")).toEqual([
      { shard: 0, reservation_id: id },
    ]);

    // One pass, whatever the live holds before it: the settlement row says what is owed.
    const sweeper = sweeperOf(2);
    await sweeper.runOnce();
    expect(sweeper.counts.errors).toBe(0);
    expect(sweeper.counts.orphanHoldsReleased).toBe(1);
    expect((await liveHolds()).filter((h) => h.reservation_id === id)).toEqual([]);
    expect(await everyShard("select reservation_id from hold_settlements")).toEqual([]);
    expect((await inv.getProduct({ productId: victim.id })).product?.stock[0]?.available).toBe(3n);
    expect((await inv.getProduct({ productId: live.id })).product?.stock[0]?.available).toBe(6n);
    expect((await inv.checkStockInvariant({})).violations).toEqual([]);
  });

  it("releases a hold that no settlement row covers through the scrub, one bounded page per pass", async () => {
    const inv = client(InventoryService, transportFor("grpc-h2c", app.port));
    const res = client(ReservationService, transportFor("grpc-h2c", app.port));
    await liveBehind(inv, res);
    // Ended without a settlement row (as before migration 0006): only the scrub can find it.
    const { victim, id } = await reserveVictim(inv, res);
    await app.shards
      .forId(id, "res", "reservation_id")
      .fork()
      .execute("update reservations set status = 'released' where id = ?", [id]);
    const older = new Set(
      (
        await app.shards.shards[0]
          ?.fork()
          .execute(
            "select distinct reservation_id from stock_holds where status = 'held' and reservation_id < ?",
            [id],
          )
      )?.map((r) => String(r.reservation_id)),
    );
    expect(older.size).toBeGreaterThanOrEqual(4);

    const sweeper = sweeperOf(2);
    let passes = 0;
    while ((await liveHolds()).some((h) => h.reservation_id === id)) {
      await sweeper.runOnce();
      passes++;
      expect(passes).toBeLessThanOrEqual(Math.ceil(older.size / 2) + 1);
    }
    // Pages of 2 in id order: it took the passes over the older reservations' pages first.
    expect(passes).toBe(Math.floor(older.size / 2) + 1);
    expect(sweeper.counts.errors).toBe(0);
    expect(sweeper.counts.orphanHoldsReleased).toBe(1);
    expect((await inv.getProduct({ productId: victim.id })).product?.stock[0]?.available).toBe(3n);
    expect((await inv.checkStockInvariant({})).violations).toEqual([]);
  });
});
