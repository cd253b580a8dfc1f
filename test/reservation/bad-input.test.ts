import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import {
  type ExtendReservationRequestSchema,
  type GetReservationRequestSchema,
  type ListReservationsRequestSchema,
  type ReleaseReservationRequestSchema,
  ReservationService,
  ReservationStatus,
} from "../../gen/shop/reservation/v1/reservation_pb.js";
import type { App } from "../../src/app.js";
import { newId } from "../../src/shard/ids.js";
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

type CreateReq = {
  userId: string;
  items: { productId: string; quantity: bigint; warehouseId?: string }[];
  ttl?: { seconds?: bigint; nanos?: number };
  idempotencyKey: string;
};
type GetReq = MessageInitShape<typeof GetReservationRequestSchema>;
type ListReq = MessageInitShape<typeof ListReservationsRequestSchema>;
type ReleaseReq = MessageInitShape<typeof ReleaseReservationRequestSchema>;
type ExtendReq = MessageInitShape<typeof ExtendReservationRequestSchema>;

/** What a case may build its request from. */
interface Fixture {
  /** Two products of one seller, 5 units each, untouched by the cases. */
  p1: string;
  p2: string;
  /** A buyer with two ACTIVE reservations (holding 1 unit of `held`). */
  holder: string;
  reservationId: string;
  /** next_page_token of the holder's first page of one. */
  pageToken: string;
}

/** Ids that are not reservation ids: empty, wrong kind, wrong length, wrong alphabet, too big, bad bucket. */
const badReservationIds = (f: Fixture): [string, string][] => [
  ["empty", ""],
  ["a product id", f.p1],
  ["no body", "res_"],
  ["too short", "res_01ABC"],
  ["too long", `${f.reservationId}0`],
  ["lower case", f.reservationId.toLowerCase()],
  ["a letter Crockford excludes", `res_${"U".repeat(26)}`],
  ["more than 128 bits", `res_${"Z".repeat(26)}`],
  ["a bucket past the last", idWithBucket("res", 0xffff)],
  ["no kind", f.reservationId.slice(4)],
];

/** User ids a caller may not use. */
const badUserIds: [string, string][] = [
  ["empty", ""],
  ["leading space", " buyer"],
  ["trailing space", "buyer "],
  ["129 characters", "u".repeat(129)],
  ["a control character", "buy\u0007er"],
];

/** Idempotency keys a caller may not use. */
const badKeys: [string, string][] = [
  ["missing", ""],
  ["a space", "has space"],
  ["129 characters", "k".repeat(129)],
  ["non-ASCII", "ключ"],
];

/** TTLs under one second. */
const shortTtls: [string, { seconds?: bigint; nanos?: number }][] = [
  ["zero", { seconds: 0n }],
  ["half a second", { nanos: 500_000_000 }],
  ["just under a second", { seconds: 1n, nanos: -1 }],
  ["negative", { seconds: -5n }],
];

function createCases(f: Fixture): [string, string, (base: CreateReq) => CreateReq][] {
  const item = (over: object) => (b: CreateReq) => ({
    ...b,
    items: [{ productId: f.p1, quantity: 1n, ...over }],
  });
  return [
    ...badUserIds.map(([what, userId]): [string, string, (b: CreateReq) => CreateReq] => [
      `user_id ${what}`,
      "user_id",
      (b) => ({ ...b, userId }),
    ]),
    ["no items", "items", (b) => ({ ...b, items: [] })],
    [
      "101 items",
      "items",
      (b) => ({
        ...b,
        items: Array.from({ length: 101 }, () => ({ productId: newId("prd", 0), quantity: 1n })),
      }),
    ],
    ["empty product_id", "items[0].product_id", item({ productId: "" })],
    ["malformed product_id", "items[0].product_id", item({ productId: "prd_nope" })],
    ["a reservation id as product_id", "items[0].product_id", item({ productId: f.reservationId })],
    ["product_id with a bad bucket", "items[0].product_id", item({ productId: idWithBucket("prd", 4096) })],
    [
      "malformed second product_id",
      "items[1].product_id",
      (b) => ({
        ...b,
        items: [
          { productId: f.p1, quantity: 1n },
          { productId: `${f.p2}!`, quantity: 1n },
        ],
      }),
    ],
    ["quantity 0", "items[0].quantity", item({ quantity: 0n })],
    ["quantity -1", "items[0].quantity", item({ quantity: -1n })],
    ["quantity -2^63", "items[0].quantity", item({ quantity: -(2n ** 63n) })],
    ["quantity 10001", "items[0].quantity", item({ quantity: 10_001n })],
    ["quantity 2^62", "items[0].quantity", item({ quantity: 2n ** 62n })],
    [
      "quantity 0 on the second item",
      "items[1].quantity",
      (b) => ({
        ...b,
        items: [
          { productId: f.p1, quantity: 1n },
          { productId: f.p2, quantity: 0n },
        ],
      }),
    ],
    [
      "a product named twice",
      "items[2].product_id",
      (b) => ({
        ...b,
        items: [
          { productId: f.p1, quantity: 1n },
          { productId: f.p2, quantity: 1n },
          { productId: f.p1, quantity: 2n },
        ],
      }),
    ],
    ["warehouse_id with a space", "items[0].warehouse_id", item({ warehouseId: "main hall" })],
    ["warehouse_id of 65 characters", "items[0].warehouse_id", item({ warehouseId: "w".repeat(65) })],
    ["warehouse_id with a slash", "items[0].warehouse_id", item({ warehouseId: "../main" })],
    ...shortTtls.map(([what, ttl]): [string, string, (b: CreateReq) => CreateReq] => [
      `ttl ${what}`,
      "ttl",
      (b) => ({ ...b, ttl }),
    ]),
    ...badKeys.map(([what, idempotencyKey]): [string, string, (b: CreateReq) => CreateReq] => [
      `idempotency_key ${what}`,
      "idempotency_key",
      (b) => ({ ...b, idempotencyKey }),
    ]),
  ];
}

describe.each(MAIN_TRANSPORTS)("ReservationService rejects bad input over %s", (name) => {
  const inv = () => client(InventoryService, transportFor(name, app.port));
  const res = () => client(ReservationService, transportFor(name, app.port));
  let f: Fixture;
  /** The holder's reservation and both products' stock, as they must stay. */
  let untouched: () => Promise<unknown>;
  let before: unknown;

  const rowsOf = async (userId: string) => {
    const em = app.shards.forUser(userId).fork();
    const [r] = await em.execute<{ n: string }[]>(
      "select count(*) as n from reservations where user_id = ?",
      [userId],
    );
    const [k] = await em.execute<{ n: string }[]>(
      "select count(*) as n from idempotency_records where scope = ?",
      [`buyer:${userId}`],
    );
    return { reservations: Number(r?.n), keys: Number(k?.n) };
  };

  beforeAll(async () => {
    const seller = userOnShard(app, 1, "seller");
    const [p1, p2] = await Promise.all([
      seedProduct(inv(), seller, { stock: { main: 5 } }),
      seedProduct(inv(), seller, { stock: { main: 5 } }),
    ]);
    const holder = userOnShard(app, 2, "holder");
    const reserve = () =>
      res().createReservation({
        userId: holder,
        items: [{ productId: p2?.id ?? "", quantity: 1n }],
        idempotencyKey: unique("k"),
      });
    const { reservation } = await reserve();
    await reserve();
    const page = await res().listReservations({ userId: holder, pageSize: 1 });
    expect(page.nextPageToken).not.toBe("");
    f = {
      p1: p1?.id ?? "",
      p2: p2?.id ?? "",
      holder,
      reservationId: reservation?.id ?? "",
      pageToken: page.nextPageToken,
    };
    untouched = async () => ({
      reservation: (await res().getReservation({ userId: holder, reservationId: f.reservationId }))
        .reservation,
      rows: await rowsOf(holder),
      stock: await Promise.all(
        [f.p1, f.p2].map(async (productId) => (await inv().getProduct({ productId })).product?.stock),
      ),
    });
    before = await untouched();
  });

  /** Asserts INVALID_ARGUMENT naming `field`, and that nothing anywhere changed. */
  async function rejected(call: Promise<unknown>, field: string, userId?: string): Promise<void> {
    await expectError(call, Code.InvalidArgument, field);
    if (userId !== undefined) expect(await rowsOf(userId)).toEqual({ reservations: 0, keys: 0 });
    expect(await untouched()).toEqual(before);
  }

  it("CreateReservation names the bad field and holds nothing", async () => {
    const cases = createCases(f);
    expect(cases.length).toBeGreaterThanOrEqual(30);
    for (const [what, field, patch] of cases) {
      const buyer = unique("buyer");
      const req = patch({
        userId: buyer,
        items: [{ productId: f.p1, quantity: 1n }],
        idempotencyKey: unique("k"),
      });
      await rejected(res().createReservation(req), field, req.userId).catch((e: unknown) => {
        throw new Error(`case "${what}": ${(e as Error).message}`, { cause: e });
      });
    }
  });

  it("GetReservation names user_id and reservation_id", async () => {
    for (const [, userId] of badUserIds)
      await rejected(res().getReservation({ userId, reservationId: f.reservationId }), "user_id");
    for (const [what, reservationId] of badReservationIds(f))
      await rejected(res().getReservation({ userId: f.holder, reservationId }), "reservation_id").catch(
        (e: unknown) => {
          throw new Error(`case "${what}": ${(e as Error).message}`, { cause: e });
        },
      );
  });

  it("ListReservations names user_id, statuses[i], page_size and page_token", async () => {
    const base: ListReq = { userId: f.holder };
    const cases: [string, ListReq][] = [
      ...badUserIds.map(([, userId]): [string, ListReq] => ["user_id", { ...base, userId }]),
      ["statuses[0]", { ...base, statuses: [99 as ReservationStatus] }],
      ["statuses[1]", { ...base, statuses: [ReservationStatus.ACTIVE, -3 as ReservationStatus] }],
      ["statuses[0]", { ...base, statuses: [ReservationStatus.UNSPECIFIED] }],
      ["page_size", { ...base, pageSize: 101 }],
      ["page_size", { ...base, pageSize: -1 }],
      ["page_token", { ...base, pageToken: "not a token" }],
      ["page_token", { ...base, pageToken: Buffer.from('{"v":1}').toString("base64url") }],
      ["page_token", { ...base, pageToken: "x".repeat(1025) }],
      // A real token, but issued for another filter or another user.
      ["page_token", { ...base, statuses: [ReservationStatus.ACTIVE], pageToken: f.pageToken }],
      ["page_token", { ...base, userId: unique("other"), pageToken: f.pageToken }],
    ];
    for (const [field, req] of cases) await rejected(res().listReservations(req), field);
    // The same token is fine for the listing it was issued for.
    const next = await res().listReservations({ userId: f.holder, pageSize: 1, pageToken: f.pageToken });
    expect(next.reservations).toHaveLength(1);
  });

  it("ReleaseReservation names the bad field and releases nothing", async () => {
    const base: ReleaseReq = {
      userId: f.holder,
      reservationId: f.reservationId,
      idempotencyKey: unique("k"),
    };
    const cases: [string, ReleaseReq][] = [
      ...badUserIds.map(([, userId]): [string, ReleaseReq] => ["user_id", { ...base, userId }]),
      ...badReservationIds(f).map(([, reservationId]): [string, ReleaseReq] => [
        "reservation_id",
        { ...base, reservationId },
      ]),
      ...badKeys.map(([, idempotencyKey]): [string, ReleaseReq] => [
        "idempotency_key",
        { ...base, idempotencyKey },
      ]),
    ];
    for (const [field, req] of cases) await rejected(res().releaseReservation(req), field);
  });

  it("ExtendReservation names the bad field and extends nothing", async () => {
    const base: ExtendReq = {
      userId: f.holder,
      reservationId: f.reservationId,
      ttl: { seconds: 900n },
      idempotencyKey: unique("k"),
    };
    const cases: [string, ExtendReq][] = [
      ...badUserIds.map(([, userId]): [string, ExtendReq] => ["user_id", { ...base, userId }]),
      ...badReservationIds(f).map(([, reservationId]): [string, ExtendReq] => [
        "reservation_id",
        { ...base, reservationId },
      ]),
      ...shortTtls.map(([, ttl]): [string, ExtendReq] => ["ttl", { ...base, ttl }]),
      ...badKeys.map(([, idempotencyKey]): [string, ExtendReq] => [
        "idempotency_key",
        { ...base, idempotencyKey },
      ]),
    ];
    for (const [field, req] of cases) await rejected(res().extendReservation(req), field);
  });

  it("the fixture is live: a good request with the same shapes still works", async () => {
    // Guards against cases passing for the wrong reason (e.g. a fixture that could never succeed).
    const buyer = unique("buyer");
    const ok = await res().createReservation({
      userId: buyer,
      items: [
        { productId: f.p1, quantity: 1n, warehouseId: "main" },
        { productId: f.p2, quantity: 1n },
      ],
      ttl: { seconds: 1n },
      idempotencyKey: "k".repeat(128),
    });
    expect(ok.reservation?.status).toBe(ReservationStatus.ACTIVE);
    await res().releaseReservation({
      userId: buyer,
      reservationId: ok.reservation?.id ?? "",
      idempotencyKey: unique("k"),
    });
    const got: GetReq = { userId: f.holder, reservationId: f.reservationId };
    expect((await res().getReservation(got)).reservation?.status).toBe(ReservationStatus.ACTIVE);
  });
});

/** A well-formed id of `kind` whose bucket field is `bucket` (possibly past the last bucket). */
function idWithBucket(kind: string, bucket: number): string {
  const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
  let value = (BigInt(Date.now()) << 80n) | (BigInt(bucket & 0xffff) << 64n) | 12345n;
  let body = "";
  for (let i = 0; i < 26; i++) {
    body = alphabet[Number(value & 31n)] + body;
    value >>= 5n;
  }
  return `${kind}_${body}`;
}
