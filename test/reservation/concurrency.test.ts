import { Code, ConnectError } from "@connectrpc/connect";
import { status as grpcStatus } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import { ReservationService, ReservationStatus } from "../../gen/shop/reservation/v1/reservation_pb.js";
import type { App } from "../../src/app.js";
import { startTestApp, unique } from "../harness/app.js";
import { client, grpcJsClient, transportFor } from "../harness/clients.js";
import { seedProduct } from "../inventory/seed.js";
import { userOnShard } from "./seed.js";

let app: App & { port: number };
let grpc: ReturnType<typeof grpcJsClient>;

beforeAll(async () => {
  app = await startTestApp();
  grpc = grpcJsClient(
    app.port,
    "proto/shop/reservation/v1/reservation.proto",
    "shop.reservation.v1.ReservationService",
  );
});
afterAll(async () => {
  grpc?.close();
  await app?.shutdown();
});

const inv = () => client(InventoryService, transportFor("grpc-h2c", app.port));
const res = () => client(ReservationService, transportFor("grpc-h2c", app.port));

const stockOf = async (productId: string) => {
  const level = (await inv().getProduct({ productId })).product?.stock[0];
  if (!level) throw new Error(`product ${productId} has no stock level`);
  return level;
};

type GrpcError = { code: number; details: string };

describe("reservations under contention", () => {
  it("a hot SKU with stock 10 and 500 concurrent buyers on every shard: exactly 10 win", async () => {
    const product = await seedProduct(inv(), userOnShard(app, 0, "hot-seller"), { stock: { main: 10 } });
    const buyers = Array.from({ length: 500 }, (_, i) => unique(`hot-buyer${i}`));
    const perShard = [0, 1, 2].map((s) => buyers.filter((b) => app.shards.forUser(b).index === s).length);
    // Buyers on the seller's shard take the one-transaction path, the others the saga: both race.
    expect(
      perShard.every((n) => n > 0),
      `buyers per shard ${perShard}`,
    ).toBe(true);

    const outcomes = await Promise.all(
      buyers.map((userId) =>
        grpc
          .call<{ reservation: { id: string; status: string } }>("CreateReservation", {
            userId,
            items: [{ productId: product.id, quantity: "1" }],
            idempotencyKey: unique("k"),
          })
          .then(
            (ok) => ({ userId, ok, code: grpcStatus.OK }),
            (e: GrpcError) => ({ userId, ok: undefined, code: e.code, details: e.details }),
          ),
      ),
    );
    const codes = new Map<number, number>();
    for (const o of outcomes) codes.set(o.code, (codes.get(o.code) ?? 0) + 1);
    const summary = JSON.stringify([...codes]);
    expect(codes.get(grpcStatus.OK), summary).toBe(10);
    expect(codes.get(grpcStatus.FAILED_PRECONDITION), summary).toBe(490);
    for (const o of outcomes.filter((x) => x.ok))
      expect(o.ok?.reservation.status).toBe("RESERVATION_STATUS_ACTIVE");

    const level = await stockOf(product.id);
    expect(level.available).toBe(0n);
    expect(level.held).toBe(10n);
    expect((await inv().checkStockInvariant({})).violations).toEqual([]);

    // The ten winners are the ten live holds on the seller's shard.
    const holds = await app.shards.shards[0]
      ?.fork()
      .execute<{ reservation_id: string }[]>(
        "select reservation_id from stock_holds where product_id = ? and status = 'held'",
        [product.id],
      );
    expect(holds?.map((h) => h.reservation_id).sort()).toEqual(
      outcomes
        .filter((o) => o.ok)
        .map((o) => o.ok?.reservation.id)
        .sort(),
    );
  });

  it("200 overlapping reservations over three stock shards: all or nothing, and stock adds up", async () => {
    const random = seeded(20_240_601);
    const pick = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
    const sellers = [0, 1, 2].map((s) => userOnShard(app, s, "xs-seller"));
    const initial = new Map<string, number>();
    const products = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const stock = pick(3, 8);
        const p = await seedProduct(inv(), sellers[i % 3] as string, { stock: { main: stock } });
        initial.set(p.id, stock);
        return p.id;
      }),
    );
    expect(new Set(products.map((id) => app.shards.forId(id, "prd", "id").index))).toEqual(
      new Set([0, 1, 2]),
    );

    const requests = Array.from({ length: 200 }, (_, i) => {
      const chosen = new Set<string>();
      const want = pick(1, 4);
      while (chosen.size < want) chosen.add(products[pick(0, products.length - 1)] as string);
      return {
        userId: userOnShard(app, i % 3, `xs-buyer${i}`),
        items: [...chosen].map((productId) => ({ productId, quantity: BigInt(pick(1, 2)) })),
        idempotencyKey: unique("k"),
      };
    });
    expect(new Set(requests.map((r) => app.shards.forUser(r.userId).index)).size).toBe(3);
    const demand = requests.reduce((n, r) => n + r.items.reduce((m, i) => m + Number(i.quantity), 0), 0);
    const supply = [...initial.values()].reduce((a, b) => a + b, 0);
    expect(demand).toBeGreaterThan(supply * 2); // real contention

    const outcomes = await Promise.all(
      requests.map((r) =>
        res()
          .createReservation(r)
          .then(
            (ok) => ({ req: r, id: ok.reservation?.id, code: undefined as Code | undefined }),
            (e: unknown) => ({ req: r, id: undefined, code: ConnectError.from(e).code }),
          ),
      ),
    );
    const won = outcomes.filter((o) => o.code === undefined);
    const refused = outcomes.filter((o) => o.code === Code.FailedPrecondition);
    const aborted = outcomes.filter((o) => o.code === Code.Aborted);
    const other = outcomes.filter(
      (o) => o.code !== undefined && o.code !== Code.FailedPrecondition && o.code !== Code.Aborted,
    );
    expect(other.map((o) => (o.code === undefined ? "ok" : Code[o.code]))).toEqual([]);
    expect(won.length).toBeGreaterThan(0);
    expect(refused.length).toBeGreaterThan(0);

    // Every reservation of these buyers, from each buyer's shard, and every hold of these products.
    const users = requests.map((r) => r.userId);
    const reservations = new Map<string, { userId: string; status: string }>();
    const items: { reservation_id: string; product_id: string; quantity: string }[] = [];
    const holds: { reservation_id: string; product_id: string; quantity: string; status: string }[] = [];
    for (const shard of app.shards.shards) {
      const em = shard.fork();
      const rows = await em.execute<{ id: string; user_id: string; status: string }[]>(
        "select id, user_id, status from reservations where user_id in (?)",
        [users],
      );
      for (const r of rows) reservations.set(r.id, { userId: r.user_id, status: r.status });
      if (rows.length > 0)
        items.push(
          ...(await em.execute<typeof items>(
            "select reservation_id, product_id, quantity from reservation_items where reservation_id in (?)",
            [rows.map((r) => r.id)],
          )),
        );
      holds.push(
        ...(await em.execute<typeof holds>(
          "select reservation_id, product_id, quantity, status from stock_holds where product_id in (?)",
          [products],
        )),
      );
    }

    // The callers' answers match the rows: winners ACTIVE, everyone else ACTIVE nowhere.
    const active = new Set([...reservations].filter(([, r]) => r.status === "active").map(([id]) => id));
    expect([...active].sort()).toEqual(won.map((o) => o.id).sort());
    const losers = new Set([...refused, ...aborted].map((o) => o.req.userId));
    for (const [id, r] of reservations) {
      if (losers.has(r.userId)) expect(r.status, id).toBe("failed");
      else expect(r.status, id).toBe("active");
    }
    expect([...reservations.values()].every((r) => r.status !== "pending")).toBe(true);

    // No live hold outside an ACTIVE reservation: the refused and the aborted hold nothing.
    const live = holds.filter((h) => h.status === "held");
    expect(live.filter((h) => !active.has(h.reservation_id))).toEqual([]);
    // Each ACTIVE reservation holds exactly its items.
    const key = (x: { reservation_id: string; product_id: string; quantity: string }) =>
      `${x.reservation_id}/${x.product_id}/${Number(x.quantity)}`;
    expect(live.map(key).sort()).toEqual(
      items
        .filter((i) => active.has(i.reservation_id))
        .map(key)
        .sort(),
    );

    // Per product: held == what ACTIVE reservations hold of it; what left available is exactly that.
    const heldByActive = new Map<string, number>();
    for (const i of items.filter((x) => active.has(x.reservation_id)))
      heldByActive.set(i.product_id, (heldByActive.get(i.product_id) ?? 0) + Number(i.quantity));
    let taken = 0;
    for (const id of products) {
      const level = await stockOf(id);
      expect(level.available, id).toBeGreaterThanOrEqual(0n);
      expect(Number(level.held), id).toBe(heldByActive.get(id) ?? 0);
      expect(Number(level.available) + Number(level.held), id).toBe(initial.get(id));
      taken += (initial.get(id) ?? 0) - Number(level.available);
    }
    const activeQuantity = [...heldByActive.values()].reduce((a, b) => a + b, 0);
    expect(taken).toBe(activeQuantity);
    expect(activeQuantity).toBe(
      won.reduce((n, o) => n + o.req.items.reduce((m, i) => m + Number(i.quantity), 0), 0),
    );
    expect((await inv().checkStockInvariant({})).violations).toEqual([]);

    // Every refusal is explained: an item it asked for is short now, or was held for a while by a
    // reservation that then failed and gave it back (a saga's all-or-nothing rollback).
    const released = new Set<string>();
    for (const shard of app.shards.shards) {
      const rows = await shard
        .fork()
        .execute<{ product_id: string; reference: string }[]>(
          "select product_id, reference from stock_movements where kind = 'released' and product_id in (?)",
          [products],
        );
      for (const r of rows) {
        expect(reservations.get(r.reference)?.status, r.reference).toBe("failed");
        released.add(r.product_id);
      }
    }
    const availableNow = new Map(
      await Promise.all(products.map(async (id) => [id, (await stockOf(id)).available] as const)),
    );
    for (const o of refused) {
      const explained = o.req.items.some(
        (i) => (availableNow.get(i.productId) ?? 0n) < i.quantity || released.has(i.productId),
      );
      expect(explained, `refused ${o.req.userId} with every item in stock and never rolled back`).toBe(true);
    }
    // The buyers see the same through the API: one reservation each at most, ACTIVE only for winners.
    const listed = await Promise.all(
      [...won, ...aborted].map(async (o) => ({
        o,
        statuses: (await res().listReservations({ userId: o.req.userId })).reservations.map((r) => r.status),
      })),
    );
    for (const { o, statuses } of listed)
      expect(statuses).toEqual(
        o.code === undefined ? [ReservationStatus.ACTIVE] : [ReservationStatus.FAILED],
      );
    console.info(
      `cross-shard: ${won.length} held, ${refused.length} refused, ${aborted.length} aborted (lock contention)`,
    );
  });
});

/** A small deterministic PRNG (mulberry32), so a failure can be replayed with the same requests. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
