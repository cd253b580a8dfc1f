import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { OrderService } from "../../gen/shop/order/v1/order_pb.js";
import type { App } from "../../src/app.js";
import { checkOrders } from "../../src/order/order-check.js";
import { startTestApp, unique } from "../harness/app.js";
import { client, MAIN_TRANSPORTS, transportFor } from "../harness/clients.js";
import { expectError } from "../harness/errors.js";
import { insertOrders, order, prng, randomOrders, type SeededOrder } from "./seed-orders.js";

// Issue test 7: ListTopCustomers equals a model computed from the seeded rows, and asks each shard
// exactly one question. The ranking spans every shard, so this file ranks in XTS (the ISO 4217 code
// reserved for testing), which no other test file uses; its EUR and USD orders must not count.

const CURRENCY = "XTS";
const users = Array.from({ length: 40 }, (_, i) => unique(`tc-user${i}`));
/** Two customers with exactly the same total, at the top: the tie is broken by user id. */
const tied = [unique("tc-tie-b"), unique("tc-tie-a")];
const base = {
  customerEmail: "top@example.test",
  status: "delivered" as const,
  currencyCode: CURRENCY,
  refundedMinor: 0,
  archived: false,
  createdUs: BigInt(Date.UTC(2002, 5, 1)) * 1000n,
};
const seeded: SeededOrder[] = [
  ...randomOrders({
    count: 3000,
    users,
    emails: ["top@example.test"],
    from: new Date("2002-01-01T00:00:00Z"),
    to: new Date("2002-06-01T00:00:00Z"),
    currencies: [
      [CURRENCY, 80],
      ["EUR", 15],
      ["USD", 5],
    ],
    rng: prng(7),
  }),
  ...tied.flatMap((userId) => [
    order({
      ...base,
      userId,
      totalMinor: 3_000_000,
      quantity: 6,
      paidMinor: 3_000_000,
      refundedMinor: 500_000,
    }),
    order({ ...base, userId, totalMinor: 2_000_000, paidMinor: 1_500_000 }),
  ]),
];
// Orders that must not count, each large enough to change the ranking if it did: archived, unpaid,
// in another currency, and children (their parent is the top-level order that counts).
const outsider = users[0] as string;
const parent = order({ ...base, userId: outsider, totalMinor: 100, paidMinor: 100 });
seeded.push(
  parent,
  order({ ...base, userId: outsider, totalMinor: 9_000_000, paidMinor: 9_000_000, archived: true }),
  order({ ...base, userId: outsider, totalMinor: 9_000_000, paidMinor: 0 }),
  order({ ...base, userId: outsider, totalMinor: 9_000_000, paidMinor: 9_000_000, currencyCode: "EUR" }),
  order({ ...base, userId: outsider, totalMinor: 9_000_000, paidMinor: 9_000_000, parentOrderId: parent.id }),
);

let app: App & { port: number };
beforeAll(async () => {
  // No sweeper pass during the test: it would add statements to the per-shard counts.
  app = await startTestApp({ sweepIntervalMs: 3_600_000 });
  await insertOrders(app.shards, seeded);
}, 120_000);
afterAll(async () => {
  await app?.shutdown();
});

/** The model: per customer, paid less refunded over paid, non-archived, top-level XTS orders. */
function model(limit: number): { userId: string; paid: bigint; count: bigint }[] {
  const totals = new Map<string, { paid: bigint; count: bigint }>();
  for (const o of seeded) {
    if (o.currencyCode !== CURRENCY || o.archived || o.paidMinor <= 0 || o.parentOrderId) continue;
    const t = totals.get(o.userId) ?? { paid: 0n, count: 0n };
    totals.set(o.userId, { paid: t.paid + BigInt(o.paidMinor - o.refundedMinor), count: t.count + 1n });
  }
  return [...totals]
    .map(([userId, t]) => ({ userId, ...t }))
    .sort((a, b) => (a.paid !== b.paid ? (a.paid > b.paid ? -1 : 1) : a.userId < b.userId ? -1 : 1))
    .slice(0, limit);
}

const top = (transport: string) => client(OrderService, transportFor(transport, app.port));

describe("ListTopCustomers", () => {
  it("starts from customers on every shard, with orders that pass the order consistency check", async () => {
    const onShards = new Set(users.map((u) => app.shards.forUser(u).index));
    expect(onShards.size).toBe(app.shards.shards.length);
    const mine = new Set(seeded.map((o) => o.id));
    const violations = await Promise.all(app.shards.shards.map((s) => checkOrders(s.fork())));
    expect(violations.flat().filter((v) => mine.has(v.orderId))).toEqual([]);
  });

  for (const transport of MAIN_TRANSPORTS) {
    for (const limit of [1, 2, 5, 100]) {
      it(`equals the model with limit ${limit} over ${transport}, with one statement per shard`, async () => {
        const before = app.shards.shards.map((s) => s.queryCount());
        const { customers } = await top(transport).listTopCustomers({ limit, currencyCode: CURRENCY });
        const after = app.shards.shards.map((s) => s.queryCount());
        expect(after.map((n, i) => n - (before[i] as number))).toEqual(app.shards.shards.map(() => 1));
        expect(
          customers.map((c) => ({
            userId: c.userId,
            paid: c.paidTotal?.amountMinor,
            count: c.orderCount,
            currency: c.paidTotal?.currencyCode,
          })),
        ).toEqual(model(limit).map((m) => ({ ...m, currency: CURRENCY })));
      });
    }
  }

  it("ranks tied customers by user id", async () => {
    const { customers } = await top(MAIN_TRANSPORTS[0]).listTopCustomers({
      limit: 2,
      currencyCode: CURRENCY,
    });
    expect(customers.map((c) => c.userId)).toEqual([...tied].sort());
    expect(customers[0]?.paidTotal?.amountMinor).toBe(customers[1]?.paidTotal?.amountMinor);
  });

  it("answers an empty ranking for a currency nobody paid in", async () => {
    const { customers } = await top(MAIN_TRANSPORTS[1]).listTopCustomers({ limit: 10, currencyCode: "XBA" });
    expect(customers).toEqual([]);
  });

  it("fails with UNAVAILABLE when a shard is down instead of ranking the others", async () => {
    const urls = inject("shardUrls");
    const down = await startTestApp({
      shardUrls: [urls[0] as string, "postgres://postgres:secret@127.0.0.1:1/down_db", urls[2] as string],
      sweepIntervalMs: 3_600_000,
    });
    try {
      const c = client(OrderService, transportFor(MAIN_TRANSPORTS[1], down.port));
      const err = await expectError(
        c.listTopCustomers({ limit: 5, currencyCode: CURRENCY }),
        Code.Unavailable,
      );
      expect(err.rawMessage).not.toMatch(/127\.0\.0\.1|down_db|secret|select/i);
    } finally {
      await down.shutdown();
    }
  });
});
