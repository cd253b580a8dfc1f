import { type DescMessage, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import {
  CreateReservationResponseSchema,
  ExtendReservationResponseSchema,
  ReleaseReservationResponseSchema,
  ReservationService,
  ReservationStatus,
} from "../../gen/shop/reservation/v1/reservation_pb.js";
import type { App } from "../../src/app.js";
import { newId } from "../../src/shard/ids.js";
import { bucketOfUser } from "../../src/shard/router.js";
import { startTestApp, unique } from "../harness/app.js";
import { client, MAIN_TRANSPORTS, transportFor } from "../harness/clients.js";
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

/** The answers serialized to the wire format: a replay must answer byte for byte what the first call did. */
function wire<Desc extends DescMessage>(schema: Desc, answers: MessageShape<Desc>[]): string[] {
  return answers.map((a) => Buffer.from(toBinary(schema, a)).toString("base64"));
}

/** Sends the same call three times at once. */
const thrice = <T>(call: () => Promise<T>): Promise<T[]> => Promise.all([call(), call(), call()]);

describe.each(MAIN_TRANSPORTS)("idempotent replays over %s", (name) => {
  const inv = () => client(InventoryService, transportFor(name, app.port));
  const res = () => client(ReservationService, transportFor(name, app.port));
  const available = async (productId: string) =>
    (await inv().getProduct({ productId })).product?.stock[0]?.available;
  const product = (shard: number, stock: number) =>
    seedProduct(inv(), userOnShard(app, shard, "seller"), { stock: { main: stock } });
  /** Ledger rows of one kind that a reservation wrote on the product's shard. */
  const movements = async (productId: string, kind: string, reservationId: string) => {
    const rows = await app.shards
      .forId(productId, "prd", "product_id")
      .fork()
      .execute<{ n: string }[]>(
        "select count(*) as n from stock_movements where product_id = ? and kind = ? and reference = ?",
        [productId, kind, reservationId],
      );
    return Number(rows[0]?.n);
  };
  const statuses = async (userId: string) =>
    (await res().listReservations({ userId })).reservations.map((r) => r.status);

  it("CreateReservation on the buyer's shard: three at once, one effect, one answer", async () => {
    const buyer = userOnShard(app, 0, "buyer");
    const p = await product(0, 5);
    const req = { userId: buyer, items: [{ productId: p.id, quantity: 2n }], idempotencyKey: unique("k") };
    const answers = await thrice(() => res().createReservation(req));
    const first = wire(CreateReservationResponseSchema, answers)[0];
    expect(wire(CreateReservationResponseSchema, answers)).toEqual([first, first, first]);
    expect(answers[0]?.reservation?.status).toBe(ReservationStatus.ACTIVE);
    expect(await available(p.id)).toBe(3n);
    expect(await movements(p.id, "held", answers[0]?.reservation?.id ?? "")).toBe(1);
    expect(await statuses(buyer)).toEqual([ReservationStatus.ACTIVE]);
    // A later replay still gets the same bytes and still moves nothing.
    expect(wire(CreateReservationResponseSchema, [await res().createReservation(req)])).toEqual([first]);
    expect(await available(p.id)).toBe(3n);
  });

  it("CreateReservation across shards (the saga): three at once, one effect, one answer", async () => {
    const buyer = userOnShard(app, 1, "buyer");
    const ps = await Promise.all([product(0, 5), product(2, 5)]);
    const req = {
      userId: buyer,
      items: ps.map((p) => ({ productId: p.id, quantity: 2n })),
      idempotencyKey: unique("k"),
    };
    const answers = await thrice(() => res().createReservation(req));
    const first = wire(CreateReservationResponseSchema, answers)[0];
    expect(wire(CreateReservationResponseSchema, answers)).toEqual([first, first, first]);
    const id = answers[0]?.reservation?.id ?? "";
    expect(answers[0]?.reservation?.status).toBe(ReservationStatus.ACTIVE);
    for (const p of ps) {
      expect(await available(p.id)).toBe(3n);
      expect(await movements(p.id, "held", id)).toBe(1);
    }
    expect(await statuses(buyer)).toEqual([ReservationStatus.ACTIVE]);
    expect(wire(CreateReservationResponseSchema, [await res().createReservation(req)])).toEqual([first]);
    for (const p of ps) expect(await available(p.id)).toBe(3n);
  });

  it("ReleaseReservation: three at once give the stock back once, with one answer", async () => {
    const buyer = userOnShard(app, 2, "buyer");
    const ps = await Promise.all([product(0, 4), product(1, 4)]);
    const created = await res().createReservation({
      userId: buyer,
      items: ps.map((p) => ({ productId: p.id, quantity: 3n })),
      idempotencyKey: unique("k"),
    });
    const r = created.reservation;
    for (const p of ps) expect(await available(p.id)).toBe(1n);
    const req = { userId: buyer, reservationId: r?.id ?? "", idempotencyKey: unique("k") };
    const answers = await thrice(() => res().releaseReservation(req));
    const first = wire(ReleaseReservationResponseSchema, answers)[0];
    expect(wire(ReleaseReservationResponseSchema, answers)).toEqual([first, first, first]);
    expect(answers[0]?.reservation?.status).toBe(ReservationStatus.RELEASED);
    expect(answers[0]?.reservation?.version).toBe((r?.version ?? 0n) + 1n);
    for (const p of ps) {
      expect(await available(p.id)).toBe(4n);
      expect(await movements(p.id, "released", r?.id ?? "")).toBe(1);
    }
    expect(wire(ReleaseReservationResponseSchema, [await res().releaseReservation(req)])).toEqual([first]);
    for (const p of ps) expect(await available(p.id)).toBe(4n);
    expect((await inv().checkStockInvariant({})).violations).toEqual([]);
  });

  it("ExtendReservation: three at once bump the version once, with one answer", async () => {
    const buyer = userOnShard(app, 0, "buyer");
    const p = await product(1, 3);
    const created = await res().createReservation({
      userId: buyer,
      items: [{ productId: p.id, quantity: 1n }],
      ttl: { seconds: 60n },
      idempotencyKey: unique("k"),
    });
    const r = created.reservation;
    const req = {
      userId: buyer,
      reservationId: r?.id ?? "",
      ttl: { seconds: 1200n },
      idempotencyKey: unique("k"),
    };
    const answers = await thrice(() => res().extendReservation(req));
    const first = wire(ExtendReservationResponseSchema, answers)[0];
    expect(wire(ExtendReservationResponseSchema, answers)).toEqual([first, first, first]);
    expect(answers[0]?.reservation?.version).toBe((r?.version ?? 0n) + 1n);
    const got = await res().getReservation({ userId: buyer, reservationId: r?.id ?? "" });
    expect(got.reservation?.version).toBe((r?.version ?? 0n) + 1n);
    expect(got.reservation?.expireTime).toEqual(answers[0]?.reservation?.expireTime);
    expect(wire(ExtendReservationResponseSchema, [await res().extendReservation(req)])).toEqual([first]);
    expect(
      (await res().getReservation({ userId: buyer, reservationId: r?.id ?? "" })).reservation?.version,
    ).toBe((r?.version ?? 0n) + 1n);
    expect(await available(p.id)).toBe(2n);
  });

  it("the same key with a different request is INVALID_ARGUMENT naming idempotency_key, and does nothing", async () => {
    const buyer = userOnShard(app, 1, "buyer");
    const local = await product(1, 10);
    const remote = await product(2, 10);
    const key = unique("k");
    const created = await res().createReservation({
      userId: buyer,
      items: [{ productId: local.id, quantity: 1n }],
      idempotencyKey: key,
    });
    const id = created.reservation?.id ?? "";
    // Create: other items (on the buyer's shard, and across shards), another quantity, another TTL.
    for (const items of [
      [{ productId: local.id, quantity: 2n }],
      [{ productId: remote.id, quantity: 1n }],
      [
        { productId: local.id, quantity: 1n },
        { productId: remote.id, quantity: 1n },
      ],
    ])
      await expectError(
        res().createReservation({ userId: buyer, items, idempotencyKey: key }),
        Code.InvalidArgument,
        "idempotency_key",
      );
    await expectError(
      res().createReservation({
        userId: buyer,
        items: [{ productId: local.id, quantity: 1n }],
        ttl: { seconds: 30n },
        idempotencyKey: key,
      }),
      Code.InvalidArgument,
      "idempotency_key",
    );
    expect(await available(local.id)).toBe(9n);
    expect(await available(remote.id)).toBe(10n);

    // The create's key reused for a release or an extend of that very reservation.
    await expectError(
      res().releaseReservation({ userId: buyer, reservationId: id, idempotencyKey: key }),
      Code.InvalidArgument,
      "idempotency_key",
    );
    await expectError(
      res().extendReservation({ userId: buyer, reservationId: id, idempotencyKey: key }),
      Code.InvalidArgument,
      "idempotency_key",
    );

    // Extend: the same key with another TTL. Release: the same key for another reservation.
    const extendKey = unique("k");
    const extended = await res().extendReservation({
      userId: buyer,
      reservationId: id,
      ttl: { seconds: 900n },
      idempotencyKey: extendKey,
    });
    await expectError(
      res().extendReservation({
        userId: buyer,
        reservationId: id,
        ttl: { seconds: 901n },
        idempotencyKey: extendKey,
      }),
      Code.InvalidArgument,
      "idempotency_key",
    );
    const other = await res().createReservation({
      userId: buyer,
      items: [{ productId: remote.id, quantity: 1n }],
      idempotencyKey: unique("k"),
    });
    const releaseKey = unique("k");
    await res().releaseReservation({ userId: buyer, reservationId: id, idempotencyKey: releaseKey });
    await expectError(
      res().releaseReservation({
        userId: buyer,
        reservationId: other.reservation?.id ?? "",
        idempotencyKey: releaseKey,
      }),
      Code.InvalidArgument,
      "idempotency_key",
    );
    const after = await res().getReservation({ userId: buyer, reservationId: other.reservation?.id ?? "" });
    expect(after.reservation?.status).toBe(ReservationStatus.ACTIVE);
    expect(after.reservation?.version).toBe(other.reservation?.version);
    expect((await res().getReservation({ userId: buyer, reservationId: id })).reservation?.version).toBe(
      (extended.reservation?.version ?? 0n) + 1n,
    ); // the release only
    expect(await available(local.id)).toBe(10n);
    expect(await available(remote.id)).toBe(9n);
  });

  it("different requests racing on one key: one of them takes effect, the others are INVALID_ARGUMENT", async () => {
    const buyer = userOnShard(app, 2, "buyer");
    const ps = await Promise.all([product(0, 10), product(1, 10)]);
    const key = unique("k");
    const outcomes = await Promise.all(
      [1n, 2n, 3n].map((quantity) =>
        res()
          .createReservation({
            userId: buyer,
            items: ps.map((p) => ({ productId: p.id, quantity })),
            idempotencyKey: key,
          })
          .then(
            (ok) => ({ quantity, ok, code: undefined as Code | undefined }),
            (e: unknown) => ({ quantity, ok: undefined, code: ConnectError.from(e).code }),
          ),
      ),
    );
    const won = outcomes.filter((o) => o.ok);
    expect(won).toHaveLength(1);
    expect(outcomes.filter((o) => !o.ok).map((o) => Code[o.code ?? Code.Unknown])).toEqual([
      "InvalidArgument",
      "InvalidArgument",
    ]);
    for (const p of ps) expect(await available(p.id)).toBe(10n - (won[0]?.quantity ?? 0n));
    expect(await statuses(buyer)).toEqual([ReservationStatus.ACTIVE]);
  });

  it("a refused create leaves no key: the same key later is a fresh attempt (buyer's shard)", async () => {
    const buyer = userOnShard(app, 0, "buyer");
    const p = await product(0, 1);
    const req = { userId: buyer, items: [{ productId: p.id, quantity: 2n }], idempotencyKey: unique("k") };
    await expectError(res().createReservation(req), Code.FailedPrecondition);
    await expectError(res().createReservation(req), Code.FailedPrecondition); // not a stored answer either
    expect(await available(p.id)).toBe(1n);
    await inv().adjustStock({
      productId: p.id,
      warehouseId: "main",
      delta: 4n,
      reason: "restock",
      idempotencyKey: unique("k"),
    });
    const retried = await res().createReservation(req);
    expect(retried.reservation?.status).toBe(ReservationStatus.ACTIVE);
    expect(await available(p.id)).toBe(3n);
    const again = await res().createReservation(req);
    expect(wire(CreateReservationResponseSchema, [again])).toEqual(
      wire(CreateReservationResponseSchema, [retried]),
    );
    expect(await available(p.id)).toBe(3n);
    expect(await statuses(buyer)).toEqual([ReservationStatus.ACTIVE]);
  });

  it("a refused saga leaves no key: concurrent replays are refused too, and a later one is a fresh attempt", async () => {
    const buyer = userOnShard(app, 2, "buyer");
    const plenty = await product(0, 5);
    const scarce = await product(1, 1);
    const req = {
      userId: buyer,
      items: [
        { productId: plenty.id, quantity: 2n },
        { productId: scarce.id, quantity: 2n },
      ],
      idempotencyKey: unique("k"),
    };
    const codes = (
      await Promise.all(
        [1, 2, 3].map(() =>
          res()
            .createReservation(req)
            .then(
              () => "OK",
              (e: unknown) => Code[ConnectError.from(e).code],
            ),
        ),
      )
    ).sort();
    // Each attempt is refused; a replay arriving while another attempt runs may be told to retry.
    expect(codes).toContain("FailedPrecondition");
    expect(
      codes.every((c) => c === "FailedPrecondition" || c === "Aborted"),
      codes.join(),
    ).toBe(true);
    expect(await available(plenty.id)).toBe(5n);
    expect(await available(scarce.id)).toBe(1n);
    expect(new Set(await statuses(buyer))).toEqual(new Set([ReservationStatus.FAILED]));

    await inv().adjustStock({
      productId: scarce.id,
      warehouseId: "main",
      delta: 3n,
      reason: "restock",
      idempotencyKey: unique("k"),
    });
    const retried = await res().createReservation(req);
    expect(retried.reservation?.status).toBe(ReservationStatus.ACTIVE);
    expect(await available(plenty.id)).toBe(3n);
    expect(await available(scarce.id)).toBe(2n);
    const again = await res().createReservation(req);
    expect(wire(CreateReservationResponseSchema, [again])).toEqual(
      wire(CreateReservationResponseSchema, [retried]),
    );
    expect(await available(plenty.id)).toBe(3n);
    expect((await statuses(buyer)).filter((s) => s === ReservationStatus.ACTIVE)).toHaveLength(1);
    expect((await inv().checkStockInvariant({})).violations).toEqual([]);
  });

  it("replays of a saga that died and was failed by the sweeper: one takes over, one effect, one answer", async () => {
    const buyer = userOnShard(app, 2, "buyer");
    const ps = await Promise.all([product(0, 10), product(1, 10)]);
    const request = { userId: buyer, items: ps.map((p) => ({ productId: p.id, quantity: 1n })) };
    // A first create stores the request's hash under its key; the dead saga's key has the same request.
    const earlier = await res().createReservation({ ...request, idempotencyKey: unique("k") });
    const shard = app.shards.forUser(buyer).fork();
    const [record] = await shard.execute<{ request_hash: string }[]>(
      "select request_hash from idempotency_records where scope = ?",
      [`buyer:${buyer}`],
    );
    // What a process killed mid-saga leaves once the sweeper failed its intent: a FAILED
    // reservation, and the key still marked as taken by it.
    const key = unique("k");
    const dead = newId("res", bucketOfUser(buyer));
    await shard.execute(
      "insert into reservations (id, bucket, user_id, status, expires_at) values (?, ?, ?, 'failed', now())",
      [dead, bucketOfUser(buyer), buyer],
    );
    await shard.execute(
      "insert into idempotency_records (scope, key, request_hash, response) values (?, ?, ?, ?::jsonb)",
      [`buyer:${buyer}`, key, record?.request_hash, JSON.stringify({ $pending: dead })],
    );

    const answers = await Promise.all(
      [1, 2, 3, 4, 5].map(() => res().createReservation({ ...request, idempotencyKey: key })),
    );
    const first = wire(CreateReservationResponseSchema, answers)[0];
    expect(wire(CreateReservationResponseSchema, answers)).toEqual([first, first, first, first, first]);
    expect(answers[0]?.reservation?.id).not.toBe(dead);
    expect(answers[0]?.reservation?.id).not.toBe(earlier.reservation?.id);
    for (const p of ps) expect(await available(p.id)).toBe(8n); // the earlier one and this one
    expect((await statuses(buyer)).sort()).toEqual(
      [ReservationStatus.ACTIVE, ReservationStatus.ACTIVE, ReservationStatus.FAILED].sort(),
    );
  });
});
