import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, type ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import {
  type ArchiveOrderRequestSchema,
  type CancelOrderRequestSchema,
  type CreateOrderRequestSchema,
  type ListOrdersRequestSchema,
  type ListTopCustomersRequestSchema,
  OrderService,
  OrderSort,
  OrderStatus,
  PaymentStatus,
  type RecordPaymentRequestSchema,
  type RefundOrderItemsRequestSchema,
  type UpdateOrderStatusRequestSchema,
  type WatchOrderRequestSchema,
  type WatchOrdersRequestSchema,
} from "../../gen/shop/order/v1/order_pb.js";
import { ReservationService } from "../../gen/shop/reservation/v1/reservation_pb.js";
import type { App } from "../../src/app.js";
import { newId } from "../../src/shard/ids.js";
import { bucketOfUser } from "../../src/shard/router.js";
import { startTestApp, unique } from "../harness/app.js";
import { client, MAIN_TRANSPORTS, transportFor } from "../harness/clients.js";
import { expectError } from "../harness/errors.js";
import { seedProduct } from "../inventory/seed.js";
import { userOnShard } from "../reservation/seed.js";

/*
 * Bad input on every OrderService RPC is INVALID_ARGUMENT naming the field (in the message and in
 * the ErrorReason detail), writes nothing, and leaks no SQL, host or stack; another user's order and
 * an order that does not exist are NOT_FOUND.
 */

let app: App & { port: number };
beforeAll(async () => {
  app = await startTestApp();
});
afterAll(async () => {
  await app?.shutdown();
});

type CreateReq = MessageInitShape<typeof CreateOrderRequestSchema>;
type ListReq = MessageInitShape<typeof ListOrdersRequestSchema>;
type UpdateReq = MessageInitShape<typeof UpdateOrderStatusRequestSchema>;
type CancelReq = MessageInitShape<typeof CancelOrderRequestSchema>;
type ArchiveReq = MessageInitShape<typeof ArchiveOrderRequestSchema>;
type PayReq = MessageInitShape<typeof RecordPaymentRequestSchema>;
type RefundReq = MessageInitShape<typeof RefundOrderItemsRequestSchema>;
type TopReq = MessageInitShape<typeof ListTopCustomersRequestSchema>;
type WatchReq = MessageInitShape<typeof WatchOrderRequestSchema>;
type WatchAllReq = MessageInitShape<typeof WatchOrdersRequestSchema>;
type Item = { productId: string; quantity: bigint; warehouseId?: string };

/** What a case may build its request from. */
interface Fixture {
  /** Two products of one seller, 5 units each, untouched by the cases. */
  p1: string;
  p2: string;
  /** A product priced in USD (the others are EUR). */
  usd: string;
  /** A buyer with two PENDING orders; `orderId` is one of them (one unit of p2). */
  holder: string;
  orderId: string;
  /** An ACTIVE reservation of the holder (one unit of p1). */
  reservationId: string;
  /** next_page_token of the holder's first ListOrders page of one. */
  pageToken: string;
  /** A WatchOrders cursor of the holder's stream. */
  cursor: string;
}

/** Things no error message may contain: SQL, a host, a stack frame. */
const LEAKS = ["select", "insert", "update ", "127.0.0.1", "localhost", "    at "];

function expectNoLeak(err: ConnectError): void {
  for (const leak of LEAKS) expect(err.rawMessage.toLowerCase(), err.rawMessage).not.toContain(leak);
  expect(err.rawMessage).not.toMatch(/\.ts:\d+/);
}

/** Ids of `kind` that are malformed: empty, wrong kind, wrong length, wrong alphabet, too big, bad bucket. */
const badIds = (kind: string, good: string, otherKind: string): [string, string][] => [
  ["empty", ""],
  ["another kind of id", otherKind],
  ["no body", `${kind}_`],
  ["too short", `${kind}_01ABC`],
  ["too long", `${good}0`],
  ["lower case", good.toLowerCase()],
  ["a letter Crockford excludes", `${kind}_${"U".repeat(26)}`],
  ["more than 128 bits", `${kind}_${"Z".repeat(26)}`],
  ["a bucket past the last", idWithBucket(kind, 0xffff)],
  ["no kind", good.slice(4)],
  ["a control character", `${good.slice(0, -1)}\u0001`],
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
  ["a control character", "k\u0001"],
];

const badReasons: [string, string][] = [
  ["501 characters", "r".repeat(501)],
  ["a control character", "because\u001b[31m"],
];

const badEmails: [string, string][] = [
  ["empty", ""],
  ["no at sign", "buyer.example.com"],
  ["no domain dot", "buyer@example"],
  ["a space", "bu yer@example.com"],
  ["255 characters", `${"b".repeat(243)}@example.com`],
  ["a control character", "bu\u0007yer@example.com"],
];

const badQuantities: [string, bigint][] = [
  ["0", 0n],
  ["-1", -1n],
  ["-2^63", -(2n ** 63n)],
  ["10001", 10_001n],
  ["2^62", 2n ** 62n],
];

type Case<R> = [what: string, field: string, request: R];

/** Labels each value of a list as a case of `field`, built by `make`. */
const each = <V, R>(list: [string, V][], field: string, make: (v: V) => R): Case<R>[] =>
  list.map(([what, v]) => [`${field} ${what}`, field, make(v)]);

function createCases(f: Fixture, buyer: string): Case<CreateReq>[] {
  const base = {
    userId: buyer,
    customerEmail: "buyer@example.com",
    idempotencyKey: unique("k"),
  };
  const items = (list: Item[]): CreateReq => ({ ...base, source: { case: "items", value: { items: list } } });
  const one = (over: Partial<Item>) => items([{ productId: f.p1, quantity: 1n, ...over }]);
  const good = one({});
  const i0 = "items.items[0]";
  return [
    ...each(badUserIds, "user_id", (userId) => ({ ...good, userId })),
    ["no source", "source", { ...base }],
    ...each(
      badIds("res", f.reservationId, f.orderId),
      "reservation_id",
      (value): CreateReq => ({
        ...base,
        source: { case: "reservationId", value },
      }),
    ),
    ["no items", "items.items", items([])],
    [
      "101 items",
      "items.items",
      items(Array.from({ length: 101 }, () => ({ productId: newId("prd", 0), quantity: 1n }))),
    ],
    ...each(badIds("prd", f.p1, f.reservationId), `${i0}.product_id`, (productId) => one({ productId })),
    [
      "a malformed second product_id",
      "items.items[1].product_id",
      items([
        { productId: f.p1, quantity: 1n },
        { productId: `${f.p2}!`, quantity: 1n },
      ]),
    ],
    ["a product that does not exist", `${i0}.product_id`, one({ productId: newId("prd", 7) })],
    ...each(badQuantities, `${i0}.quantity`, (quantity) => one({ quantity })),
    [
      "quantity 0 on the second item",
      "items.items[1].quantity",
      items([
        { productId: f.p1, quantity: 1n },
        { productId: f.p2, quantity: 0n },
      ]),
    ],
    [
      "a product named twice",
      "items.items[2].product_id",
      items([
        { productId: f.p1, quantity: 1n },
        { productId: f.p2, quantity: 1n },
        { productId: f.p1, quantity: 2n },
      ]),
    ],
    [
      "products in two currencies",
      "items.items",
      items([
        { productId: f.p1, quantity: 1n },
        { productId: f.usd, quantity: 1n },
      ]),
    ],
    ...each(
      [
        ["a space", "main hall"],
        ["65 characters", "w".repeat(65)],
        ["a slash", "../main"],
        ["a control character", "ma\u0000in"],
      ],
      `${i0}.warehouse_id`,
      (warehouseId: string) => one({ warehouseId }),
    ),
    ...each(badEmails, "customer_email", (customerEmail) => ({ ...good, customerEmail })),
    ...each(badKeys, "idempotency_key", (idempotencyKey) => ({ ...good, idempotencyKey })),
  ];
}

describe.each(MAIN_TRANSPORTS)("OrderService rejects bad input over %s", (name) => {
  const inv = () => client(InventoryService, transportFor(name, app.port));
  const res = () => client(ReservationService, transportFor(name, app.port));
  const ord = () => client(OrderService, transportFor(name, app.port));
  /** Runs a stream to its end: its error (validation included) arrives while iterating. */
  const drainOrder = (req: WatchReq) =>
    (async () => {
      for await (const _ of ord().watchOrder(req, { timeoutMs: 5000 })) {
        /* a bad request never gets a message */
      }
    })();
  const drainOrders = (req: WatchAllReq) =>
    (async () => {
      for await (const _ of ord().watchOrders(req, { timeoutMs: 5000 })) {
        /* a bad request never gets a message */
      }
    })();

  let f: Fixture;
  let untouched: () => Promise<unknown>;
  let before: unknown;

  /** What a buyer has on its shard: orders, reservations, idempotency keys (its own and its orders'). */
  const rowsOf = async (userId: string) => {
    const [row] = await app.shards
      .forUser(userId)
      .fork()
      .execute<Record<string, string>[]>(
        `select (select count(*) from orders where user_id = ?) as orders,
           (select count(*) from reservations where user_id = ?) as reservations,
           (select count(*) from idempotency_records where scope = 'buyer:' || ?
              or scope in (select 'order:' || id from orders where user_id = ?)) as keys`,
        [userId, userId, userId, userId],
      );
    return { orders: Number(row?.orders), reservations: Number(row?.reservations), keys: Number(row?.keys) };
  };

  beforeAll(async () => {
    const seller = userOnShard(app, 1, "seller");
    const [p1, p2] = await Promise.all([
      seedProduct(inv(), seller, { stock: { main: 5 } }),
      seedProduct(inv(), seller, { stock: { main: 5 } }),
    ]);
    const usd = await inv().createProduct({
      sellerId: seller,
      sku: unique("sku"),
      name: "Dollar mug",
      category: "kitchen",
      price: { amountMinor: 999n, currencyCode: "USD" },
      initialStock: [{ warehouseId: "main", quantity: 5n }],
      idempotencyKey: unique("k"),
    });
    const holder = userOnShard(app, 2, "holder");
    const order = async () =>
      (
        await ord().createOrder({
          userId: holder,
          source: { case: "items", value: { items: [{ productId: p2?.id ?? "", quantity: 1n }] } },
          customerEmail: "holder@example.com",
          idempotencyKey: unique("k"),
        })
      ).order;
    const first = await order();
    await order();
    const { reservation } = await res().createReservation({
      userId: holder,
      items: [{ productId: p1?.id ?? "", quantity: 1n }],
      idempotencyKey: unique("k"),
    });
    const page = await ord().listOrders({ userId: holder, pageSize: 1 });
    expect(page.nextPageToken).not.toBe("");
    const history = await ord().getOrderHistory({ userId: holder, orderId: first?.id ?? "" });
    f = {
      p1: p1?.id ?? "",
      p2: p2?.id ?? "",
      usd: usd.product?.id ?? "",
      holder,
      orderId: first?.id ?? "",
      reservationId: reservation?.id ?? "",
      pageToken: page.nextPageToken,
      cursor: history.events[0]?.cursor ?? "",
    };
    untouched = async () => {
      const [order, history, reservation, rows, stock] = await Promise.all([
        ord().getOrder({ userId: holder, orderId: f.orderId }),
        ord().getOrderHistory({ userId: holder, orderId: f.orderId }),
        res().getReservation({ userId: holder, reservationId: f.reservationId }),
        rowsOf(holder),
        Promise.all(
          [f.p1, f.p2, f.usd].map(
            async (productId) => (await inv().getProduct({ productId })).product?.stock,
          ),
        ),
      ]);
      return {
        order: order.order,
        history: history.events,
        reservation: reservation.reservation,
        rows,
        stock,
      };
    };
    before = await untouched();
  });

  /** Asserts `code` naming `field`, no leak in the message, and that nothing anywhere changed. */
  async function refused(call: Promise<unknown>, field: string, code = Code.InvalidArgument): Promise<void> {
    expectNoLeak(await expectError(call, code, field));
    expect(await untouched()).toEqual(before);
  }

  /** Runs every case of a table, naming the failing one. */
  async function table<R>(
    cases: Case<R>[],
    call: (req: R) => Promise<unknown>,
    extra?: (req: R) => Promise<void>,
  ) {
    for (const [what, field, req] of cases) {
      try {
        await refused(call(req), field);
        await extra?.(req);
      } catch (e) {
        throw new Error(`case "${what}": ${(e as Error).message}`, { cause: e });
      }
    }
  }

  it("CreateOrder names the bad field, and neither orders nor reserves anything", async () => {
    const buyer = unique("buyer");
    const cases = createCases(f, buyer);
    expect(cases.length).toBeGreaterThanOrEqual(45);
    await table(
      cases,
      (req) => ord().createOrder(req),
      async (req) => {
        expect(await rowsOf(req.userId ?? "")).toEqual({ orders: 0, reservations: 0, keys: 0 });
      },
    );
    // The fixture is live: the same shapes with good values order fine.
    const ok = await ord().createOrder({
      userId: buyer,
      source: { case: "items", value: { items: [{ productId: f.p1, quantity: 1n, warehouseId: "main" }] } },
      customerEmail: "b@example.com",
      idempotencyKey: "k".repeat(128),
    });
    expect(ok.order?.status).toBe(OrderStatus.PENDING);
    await ord().cancelOrder({
      userId: buyer,
      orderId: ok.order?.id ?? "",
      reason: "",
      idempotencyKey: unique("k"),
    });
  });

  it("GetOrder and GetOrderHistory name user_id and order_id", async () => {
    const base = { userId: f.holder, orderId: f.orderId };
    const cases: Case<{ userId: string; orderId: string }>[] = [
      ...each(badUserIds, "user_id", (userId) => ({ ...base, userId })),
      ...each(badIds("ord", f.orderId, f.reservationId), "order_id", (orderId) => ({ ...base, orderId })),
    ];
    await table(cases, (req) => ord().getOrder(req));
    await table(cases, (req) => ord().getOrderHistory(req));
  });

  it("ListOrders names the bad filter, page_size or page_token", async () => {
    const base: ListReq = { userId: f.holder };
    const cases: Case<ListReq>[] = [
      ...each(badUserIds.slice(1), "user_id", (userId) => ({ ...base, userId })), // empty is the operator's scope
      ["status UNSPECIFIED", "statuses[0]", { ...base, statuses: [OrderStatus.UNSPECIFIED] }],
      ["an unknown status", "statuses[0]", { ...base, statuses: [99 as OrderStatus] }],
      [
        "a negative second status",
        "statuses[1]",
        { ...base, statuses: [OrderStatus.PENDING, -3 as OrderStatus] },
      ],
      ["min_total_minor negative", "min_total_minor", { ...base, minTotalMinor: -1n }],
      ["min_total_minor past 10^15", "min_total_minor", { ...base, minTotalMinor: 10n ** 15n + 1n }],
      ["max_total_minor negative", "max_total_minor", { ...base, maxTotalMinor: -1n }],
      [
        "min_total_minor > max_total_minor",
        "max_total_minor",
        { ...base, minTotalMinor: 500n, maxTotalMinor: 100n },
      ],
      ["created_after out of range", "created_after", { ...base, createdAfter: { seconds: 10n ** 13n } }],
      ["created_after before year 1", "created_after", { ...base, createdAfter: { seconds: -(10n ** 11n) } }],
      [
        "created_after with negative nanos",
        "created_after",
        { ...base, createdAfter: { seconds: 1n, nanos: -1 } },
      ],
      [
        "created_before out of range",
        "created_before",
        { ...base, createdBefore: { seconds: -(10n ** 13n) } },
      ],
      ...each(badEmails.slice(1), "customer_email", (customerEmail) => ({ ...base, customerEmail })),
      ["an unknown sort", "sort", { ...base, sort: 99 as OrderSort }],
      ["page_size 101", "page_size", { ...base, pageSize: 101 }],
      ["page_size -1", "page_size", { ...base, pageSize: -1 }],
      ["page_token garbage", "page_token", { ...base, pageToken: "not a token" }],
      ["page_token of the wrong shape", "page_token", { ...base, pageToken: b64({ v: 1 }) }],
      ["page_token with a forged key", "page_token", { ...base, pageToken: b64({ v: 1, l: "x", a: [1] }) }],
      ["page_token of 2049 characters", "page_token", { ...base, pageToken: "x".repeat(2049) }],
      ["page_token with a control character", "page_token", { ...base, pageToken: `${f.pageToken}\u0001` }],
      // A real token, but issued for other filters, another sort or another user.
      [
        "page_token for other statuses",
        "page_token",
        { ...base, statuses: [OrderStatus.PENDING], pageToken: f.pageToken },
      ],
      [
        "page_token for another sort",
        "page_token",
        { ...base, sort: OrderSort.HIGHEST_TOTAL, pageToken: f.pageToken },
      ],
      [
        "page_token for another user",
        "page_token",
        { ...base, userId: unique("other"), pageToken: f.pageToken },
      ],
      ["page_token for the operator's list", "page_token", { ...base, userId: "", pageToken: f.pageToken }],
    ];
    await table(cases, (req) => ord().listOrders(req));
    // The same token is fine for the listing it was issued for.
    const next = await ord().listOrders({ userId: f.holder, pageSize: 1, pageToken: f.pageToken });
    expect(next.orders).toHaveLength(1);
    expect(next.nextPageToken).toBe("");
  });

  it("UpdateOrderStatus names the bad field and moves nothing", async () => {
    const base: UpdateReq = {
      orderId: f.orderId,
      status: OrderStatus.CONFIRMED,
      expectedVersion: 1n,
      reason: "ok",
      idempotencyKey: unique("k"),
    };
    await table<UpdateReq>(
      [
        ...each(badIds("ord", f.orderId, f.reservationId), "order_id", (orderId) => ({ ...base, orderId })),
        ["status UNSPECIFIED", "status", { ...base, status: OrderStatus.UNSPECIFIED }],
        ["an unknown status", "status", { ...base, status: 42 as OrderStatus }],
        ["a negative status", "status", { ...base, status: -1 as OrderStatus }],
        ["expected_version 0", "expected_version", { ...base, expectedVersion: 0n }],
        ["expected_version -1", "expected_version", { ...base, expectedVersion: -1n }],
        ["expected_version 2^62", "expected_version", { ...base, expectedVersion: 2n ** 62n }],
        ...each(badReasons, "reason", (reason) => ({ ...base, reason })),
        ...each(badKeys, "idempotency_key", (idempotencyKey) => ({ ...base, idempotencyKey })),
      ],
      (req) => ord().updateOrderStatus(req),
    );
  });

  it("CancelOrder names the bad field and cancels nothing", async () => {
    const base: CancelReq = { userId: f.holder, orderId: f.orderId, reason: "", idempotencyKey: unique("k") };
    await table<CancelReq>(
      [
        ...each(badUserIds, "user_id", (userId) => ({ ...base, userId })),
        ...each(badIds("ord", f.orderId, f.reservationId), "order_id", (orderId) => ({ ...base, orderId })),
        ["expected_version 0", "expected_version", { ...base, expectedVersion: 0n }],
        ["expected_version -5", "expected_version", { ...base, expectedVersion: -5n }],
        ...each(badReasons, "reason", (reason) => ({ ...base, reason })),
        ...each(badKeys, "idempotency_key", (idempotencyKey) => ({ ...base, idempotencyKey })),
      ],
      (req) => ord().cancelOrder(req),
    );
  });

  it("ArchiveOrder names the bad field and archives nothing", async () => {
    const base: ArchiveReq = { userId: f.holder, orderId: f.orderId, idempotencyKey: unique("k") };
    await table<ArchiveReq>(
      [
        ...each(badUserIds, "user_id", (userId) => ({ ...base, userId })),
        ...each(badIds("ord", f.orderId, f.reservationId), "order_id", (orderId) => ({ ...base, orderId })),
        ...each(badKeys, "idempotency_key", (idempotencyKey) => ({ ...base, idempotencyKey })),
      ],
      (req) => ord().archiveOrder(req),
    );
  });

  it("RecordPayment names the bad field and records nothing", async () => {
    const base: PayReq = {
      orderId: f.orderId,
      amount: { amountMinor: 100n, currencyCode: "EUR" },
      providerReference: "psp-1",
      status: PaymentStatus.CAPTURED,
      idempotencyKey: unique("k"),
    };
    const amount = (amountMinor: bigint, currencyCode = "EUR") => ({
      ...base,
      amount: { amountMinor, currencyCode },
    });
    await table<PayReq>(
      [
        ...each(badIds("ord", f.orderId, f.reservationId), "order_id", (orderId) => ({ ...base, orderId })),
        ["amount missing", "amount", { ...base, amount: undefined }],
        ["amount_minor 0", "amount.amount_minor", amount(0n)],
        ["amount_minor -5", "amount.amount_minor", amount(-5n)],
        ["amount_minor past 10^15", "amount.amount_minor", amount(10n ** 15n + 1n)],
        ...each(
          [
            ["empty", ""],
            ["lower case", "eur"],
            ["four letters", "EURO"],
            ["a digit", "E1R"],
            ["a control character", "E\u0001R"],
          ],
          "amount.currency_code",
          (code: string) => amount(100n, code),
        ),
        // Well-formed, but not the order's currency.
        ["another currency than the order's", "amount.currency_code", amount(100n, "USD")],
        ...each(
          [
            ["empty", ""],
            ["201 characters", "p".repeat(201)],
            ["a control character", "psp\u0000-1"],
          ],
          "provider_reference",
          (providerReference: string) => ({ ...base, providerReference }),
        ),
        ["status UNSPECIFIED", "status", { ...base, status: PaymentStatus.UNSPECIFIED }],
        ["an unknown status", "status", { ...base, status: 7 as PaymentStatus }],
        ...each(badKeys, "idempotency_key", (idempotencyKey) => ({ ...base, idempotencyKey })),
      ],
      (req) => ord().recordPayment(req),
    );
  });

  it("RefundOrderItems names the bad field and refunds nothing", async () => {
    const base: RefundReq = {
      orderId: f.orderId,
      items: [{ productId: f.p2, quantity: 1n }],
      reason: "damaged",
      idempotencyKey: unique("k"),
    };
    const one = (over: Partial<Item>) => ({ ...base, items: [{ productId: f.p2, quantity: 1n, ...over }] });
    await table<RefundReq>(
      [
        ...each(badIds("ord", f.orderId, f.reservationId), "order_id", (orderId) => ({ ...base, orderId })),
        ["no items", "items", { ...base, items: [] }],
        [
          "101 items",
          "items",
          {
            ...base,
            items: Array.from({ length: 101 }, () => ({ productId: newId("prd", 0), quantity: 1n })),
          },
        ],
        ...each(badIds("prd", f.p2, f.orderId), "items[0].product_id", (productId) => one({ productId })),
        ...each(badQuantities, "items[0].quantity", (quantity) => one({ quantity })),
        [
          "a product named twice",
          "items[1].product_id",
          {
            ...base,
            items: [
              { productId: f.p2, quantity: 1n },
              { productId: f.p2, quantity: 1n },
            ],
          },
        ],
        // Well-formed, but not a line of this order.
        ["a product the order does not have", "items[0].product_id", one({ productId: f.p1 })],
        ...each(badReasons, "reason", (reason) => ({ ...base, reason })),
        ...each(badKeys, "idempotency_key", (idempotencyKey) => ({ ...base, idempotencyKey })),
      ],
      (req) => ord().refundOrderItems(req),
    );
  });

  it("ListTopCustomers names limit and currency_code", async () => {
    const base: TopReq = { limit: 10, currencyCode: "EUR" };
    await table<TopReq>(
      [
        ["limit 101", "limit", { ...base, limit: 101 }],
        ["limit -1", "limit", { ...base, limit: -1 }],
        ...each(
          [
            ["empty", ""],
            ["lower case", "eur"],
            ["four letters", "EURO"],
            ["a control character", "E\u0007R"],
          ],
          "currency_code",
          (currencyCode: string) => ({ ...base, currencyCode }),
        ),
      ],
      (req) => ord().listTopCustomers(req),
    );
  });

  it("WatchOrder and WatchOrders end their stream naming the bad field", async () => {
    const one: WatchReq = { userId: f.holder, orderId: f.orderId, afterVersion: 0n };
    await table<WatchReq>(
      [
        ...each(badUserIds, "user_id", (userId) => ({ ...one, userId })),
        ...each(badIds("ord", f.orderId, f.reservationId), "order_id", (orderId) => ({ ...one, orderId })),
        ["after_version -1", "after_version", { ...one, afterVersion: -1n }],
        ["after_version -2^63", "after_version", { ...one, afterVersion: -(2n ** 63n) }],
      ],
      drainOrder,
    );
    const all: WatchAllReq = { userId: f.holder, afterCursor: "" };
    await table<WatchAllReq>(
      [
        ...each(badUserIds, "user_id", (userId) => ({ ...all, userId })),
        ["after_cursor garbage", "after_cursor", { ...all, afterCursor: "garbage!" }],
        ["after_cursor of the wrong shape", "after_cursor", { ...all, afterCursor: b64({ v: 1 }) }],
        [
          "after_cursor with a negative position",
          "after_cursor",
          { ...all, afterCursor: b64({ v: 1, u: f.holder, s: -1 }) },
        ],
        ["after_cursor of 513 characters", "after_cursor", { ...all, afterCursor: "c".repeat(513) }],
        [
          "after_cursor with a control character",
          "after_cursor",
          { ...all, afterCursor: `${f.cursor}\u0001` },
        ],
        [
          "another user's after_cursor",
          "after_cursor",
          { ...all, userId: unique("other"), afterCursor: f.cursor },
        ],
      ],
      drainOrders,
    );
  });

  it("another user's order is NOT_FOUND on every RPC that names its owner, and nothing changes", async () => {
    const intruder = userOnShard(app, 2, "intruder"); // the holder's shard: only ownership differs
    const who = { userId: intruder, orderId: f.orderId };
    const calls: [string, () => Promise<unknown>][] = [
      ["GetOrder", () => ord().getOrder(who)],
      ["GetOrderHistory", () => ord().getOrderHistory(who)],
      ["CancelOrder", () => ord().cancelOrder({ ...who, reason: "", idempotencyKey: unique("k") })],
      ["ArchiveOrder", () => ord().archiveOrder({ ...who, idempotencyKey: unique("k") })],
      ["WatchOrder", () => drainOrder({ ...who, afterVersion: 0n })],
    ];
    for (const [rpc, call] of calls)
      await refused(call(), "order_id", Code.NotFound).catch((e: unknown) => {
        throw new Error(`${rpc}: ${(e as Error).message}`, { cause: e });
      });
    // Nor may the intruder order from the holder's reservation.
    await refused(
      ord().createOrder({
        userId: intruder,
        source: { case: "reservationId", value: f.reservationId },
        customerEmail: "i@example.com",
        idempotencyKey: unique("k"),
      }),
      "reservation_id",
      Code.NotFound,
    );
    expect(await rowsOf(intruder)).toEqual({ orders: 0, reservations: 0, keys: 0 });
  });

  it("a well-formed id that names nothing is NOT_FOUND on every RPC, and leaves no key", async () => {
    const ghost = newId("ord", bucketOfUser(f.holder));
    const who = { userId: f.holder, orderId: ghost };
    const calls: [string, () => Promise<unknown>][] = [
      ["GetOrder", () => ord().getOrder(who)],
      ["GetOrderHistory", () => ord().getOrderHistory(who)],
      [
        "UpdateOrderStatus",
        () =>
          ord().updateOrderStatus({
            orderId: ghost,
            status: OrderStatus.CONFIRMED,
            expectedVersion: 1n,
            reason: "",
            idempotencyKey: unique("k"),
          }),
      ],
      ["CancelOrder", () => ord().cancelOrder({ ...who, reason: "", idempotencyKey: unique("k") })],
      ["ArchiveOrder", () => ord().archiveOrder({ ...who, idempotencyKey: unique("k") })],
      [
        "RecordPayment",
        () =>
          ord().recordPayment({
            orderId: ghost,
            amount: { amountMinor: 100n, currencyCode: "EUR" },
            providerReference: "psp-1",
            status: PaymentStatus.CAPTURED,
            idempotencyKey: unique("k"),
          }),
      ],
      [
        "RefundOrderItems",
        () =>
          ord().refundOrderItems({
            orderId: ghost,
            items: [{ productId: f.p2, quantity: 1n }],
            reason: "",
            idempotencyKey: unique("k"),
          }),
      ],
      ["WatchOrder", () => drainOrder({ ...who, afterVersion: 0n })],
    ];
    for (const [rpc, call] of calls)
      await refused(call(), "order_id", Code.NotFound).catch((e: unknown) => {
        throw new Error(`${rpc}: ${(e as Error).message}`, { cause: e });
      });
    const [keys] = await app.shards
      .forUser(f.holder)
      .fork()
      .execute<{ n: string }[]>("select count(*) as n from idempotency_records where scope = ?", [
        `order:${ghost}`,
      ]);
    expect(Number(keys?.n)).toBe(0);
    // A reservation id that names nothing.
    await refused(
      ord().createOrder({
        userId: f.holder,
        source: { case: "reservationId", value: newId("res", bucketOfUser(f.holder)) },
        customerEmail: "h@example.com",
        idempotencyKey: unique("k"),
      }),
      "reservation_id",
      Code.NotFound,
    );
  });
});

function b64(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString("base64url");
}

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
