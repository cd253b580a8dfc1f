import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import { ReservationService, ReservationStatus } from "../../gen/shop/reservation/v1/reservation_pb.js";
import type { App } from "../../src/app.js";
import { startTestApp, unique } from "../harness/app.js";
import { client, MAIN_TRANSPORTS, transportFor } from "../harness/clients.js";
import { expectError, shortItems } from "../harness/errors.js";
import { seedProduct } from "../inventory/seed.js";
import { userOnShard } from "./seed.js";

let app: App & { port: number };
beforeAll(async () => {
  app = await startTestApp();
});
afterAll(async () => {
  await app?.shutdown();
});

describe.each(MAIN_TRANSPORTS)("ReservationService over %s", (name) => {
  const inv = () => client(InventoryService, transportFor(name, app.port));
  const res = () => client(ReservationService, transportFor(name, app.port));
  const available = async (productId: string) =>
    (await inv().getProduct({ productId })).product?.stock[0]?.available;

  it("holds stock on the buyer's own shard in one step, and releases it", async () => {
    const buyer = userOnShard(app, 0, "buyer");
    const p = await seedProduct(inv(), userOnShard(app, 0, "seller"), { stock: { main: 5 } });
    const { reservation } = await res().createReservation({
      userId: buyer,
      items: [{ productId: p.id, quantity: 2n }],
      idempotencyKey: unique("k"),
    });
    expect(reservation?.status).toBe(ReservationStatus.ACTIVE);
    expect(reservation?.items[0]).toMatchObject({ productId: p.id, warehouseId: "main", quantity: 2n });
    expect(await available(p.id)).toBe(3n);
    const released = await res().releaseReservation({
      userId: buyer,
      reservationId: reservation?.id ?? "",
      idempotencyKey: unique("k"),
    });
    expect(released.reservation?.status).toBe(ReservationStatus.RELEASED);
    expect(await available(p.id)).toBe(5n);
  });

  it("holds items on three shards all or nothing", async () => {
    const buyer = userOnShard(app, 1, "buyer");
    const ps = await Promise.all(
      [0, 1, 2].map((s) => seedProduct(inv(), userOnShard(app, s, "seller"), { stock: { main: 3 } })),
    );
    const items = ps.map((p) => ({ productId: p.id, quantity: 2n }));
    const ok = await res().createReservation({ userId: buyer, items, idempotencyKey: unique("k") });
    expect(ok.reservation?.status).toBe(ReservationStatus.ACTIVE);
    expect(ok.reservation?.items).toHaveLength(3);
    for (const p of ps) expect(await available(p.id)).toBe(1n);
    const err = await expectError(
      res().createReservation({ userId: buyer, items, idempotencyKey: unique("k") }),
      Code.FailedPrecondition,
    );
    expect(
      shortItems(err)
        .map((s) => s.productId)
        .sort(),
    ).toEqual(ps.map((p) => p.id).sort());
    for (const p of ps) expect(await available(p.id)).toBe(1n);
    const listed = await res().listReservations({ userId: buyer });
    expect(listed.reservations.map((r) => r.status)).toEqual([
      ReservationStatus.FAILED,
      ReservationStatus.ACTIVE,
    ]);
    expect((await inv().checkStockInvariant({})).violations).toEqual([]);
  });

  it("extends an active reservation and hides it from other users", async () => {
    const buyer = unique("buyer");
    const p = await seedProduct(inv(), unique("seller"), { stock: { main: 1 } });
    const { reservation } = await res().createReservation({
      userId: buyer,
      items: [{ productId: p.id, quantity: 1n }],
      ttl: { seconds: 60n },
      idempotencyKey: unique("k"),
    });
    const id = reservation?.id ?? "";
    const extended = await res().extendReservation({
      userId: buyer,
      reservationId: id,
      ttl: { seconds: 600n },
      idempotencyKey: unique("k"),
    });
    expect(Number(extended.reservation?.expireTime?.seconds)).toBeGreaterThan(
      Number(reservation?.expireTime?.seconds) + 500,
    );
    await expectError(
      res().getReservation({ userId: unique("other"), reservationId: id }),
      Code.NotFound,
      "reservation_id",
    );
    await res().releaseReservation({ userId: buyer, reservationId: id, idempotencyKey: unique("k") });
    await expectError(
      res().extendReservation({ userId: buyer, reservationId: id, idempotencyKey: unique("k") }),
      Code.FailedPrecondition,
      "reservation_id",
    );
  });

  it("answers a replayed CreateReservation with the first answer and one effect", async () => {
    const buyer = userOnShard(app, 2, "buyer");
    const ps = await Promise.all(
      [0, 1].map((s) => seedProduct(inv(), userOnShard(app, s, "seller"), { stock: { main: 10 } })),
    );
    const req = {
      userId: buyer,
      items: ps.map((p) => ({ productId: p.id, quantity: 1n })),
      idempotencyKey: unique("k"),
    };
    const answers = await Promise.all([1, 2, 3].map(() => res().createReservation(req)));
    expect(new Set(answers.map((a) => a.reservation?.id)).size).toBe(1);
    for (const p of ps) expect(await available(p.id)).toBe(9n);
    await expectError(
      res().createReservation({ ...req, items: req.items.slice(0, 1) }),
      Code.InvalidArgument,
      "idempotency_key",
    );
  });
});
