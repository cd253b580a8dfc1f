import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FINAL, ORDER_STATUSES } from "../../src/order/order.model.js";
import {
  type ListOrdersQuery,
  listOrdersStatement,
  TOP_CUSTOMERS_SQL,
} from "../../src/order/order.queries.js";
import type { Shard, ShardSet } from "../../src/shard/shards.js";
import { unique } from "../harness/app.js";
import { migrateShards } from "../harness/global-setup.js";
import { createShardDatabases, dropShardDatabases, openTestShards } from "../harness/shard-databases.js";
import { insertOrders, prng, listQuery as query, randomOrders } from "./seed-orders.js";

// Each ListOrders filter+sort shape, and the ListTopCustomers aggregate, is served by the index made
// for it in 0003 (and 0005: open statuses, total ranges under NEWEST): EXPLAIN of the exact statement
// the code sends (with a cursor and without), on a shard holding 6,000 orders, vacuumed and
// analysed. No planner switches: if Postgres preferred a sequential scan for real, this test should
// fail. The statement's lateral lookups (children, lines, payments) go by index too.
// - A big customer (3,000 orders, one email): every shape walks its sort's index in order from the
//   cursor and stops after page_size + 1 rows (no Sort node), as does operator scope.
// - A typical customer (~75 orders): Postgres may prefer a bitmap scan of the user's (or email's)
//   index and a top-N sort of the few matching rows; still bounded by the index, never a Seq Scan.
// Its own database: plans must not depend on what other test files insert meanwhile (fresh rows
// from open transactions keep VACUUM from marking pages all-visible, which index-only scans need).

const prefix = `explain_${process.pid}`;
let shards: ShardSet;
let shard: Shard;
const users = Array.from({ length: 41 }, (_, i) => unique(`explain${i}`));
const emails = Array.from({ length: 6 }, (_, i) => `${unique(`explain${i}`)}@example.test`);

beforeAll(async () => {
  const urls = await createShardDatabases(undefined, 1, prefix);
  await migrateShards(urls);
  shards = await openTestShards(urls);
  shard = shards.shards[0] as Shard;
  // users[0] and emails[0] take about half of the orders: the big customer.
  const orders = randomOrders({
    count: 6000,
    users: [...users, ...users.slice(1).map(() => users[0] as string)],
    emails: [...emails, ...emails.slice(1).map(() => emails[0] as string)],
    from: new Date("2003-01-01T00:00:00Z"),
    to: new Date("2003-07-01T00:00:00Z"),
    rng: prng(3),
  });
  await insertOrders(shards, orders);
  // Statistics and the visibility map, as autovacuum leaves them on a live shard.
  await shard.fork().execute("vacuum analyze orders");
}, 120_000);
afterAll(async () => {
  await shards?.close();
  await dropShardDatabases(undefined, 1, prefix);
});

async function explain(sql: string, params: unknown[]): Promise<string> {
  const rows = await shard.fork().execute<Record<string, string>[]>(`explain ${sql}`, params);
  return rows.map((r) => r["QUERY PLAN"]).join("\n");
}

const june = "2003-06-01T00:00:00.000000Z";
const march = "2003-03-01T00:00:00.000000Z";
// A cursor in the middle of the data: [created_us, id] or [total, created_us, id].
// (2003-04-15, inside every created range below, so the cursor and the range overlap.)
const mid = { created: "1050364800000000", id: "ord_00WFZZZZZZ0000000000000000", total: "9000" };

/** [shape, query, the index that must serve it]. */
const shapes: [string, Partial<ListOrdersQuery>, string][] = [
  ["one user, newest", { userId: "U" }, "orders_user_newest_idx"],
  [
    "one user, newest, created range",
    { userId: "U", createdAfter: march, createdBefore: june },
    "orders_user_newest_idx",
  ],
  [
    "one user, newest, statuses + totals + archived",
    {
      userId: "U",
      statuses: ["shipped", "pending"],
      minTotalMinor: 500,
      maxTotalMinor: 9000,
      includeArchived: true,
    },
    "orders_user_open_newest_idx",
  ],
  [
    "one user, newest, statuses with a final one + totals",
    { userId: "U", statuses: ["shipped", "cancelled"], minTotalMinor: 500, maxTotalMinor: 9000 },
    "orders_user_newest_idx",
  ],
  ["one user, newest, total range", { userId: "U", minTotalMinor: 15_000 }, "orders_user_newest_idx"],
  ["one user, highest total", { userId: "U", sort: "highest_total" }, "orders_user_total_idx"],
  [
    "one user, highest total, total range",
    { userId: "U", sort: "highest_total", minTotalMinor: 500, maxTotalMinor: 9000 },
    "orders_user_total_idx",
  ],
  [
    "one user, highest total, created range + statuses",
    { userId: "U", sort: "highest_total", createdAfter: march, statuses: ["delivered"] },
    "orders_user_total_idx",
  ],
  [
    "one user, highest total, open statuses",
    { userId: "U", sort: "highest_total", statuses: ["pending", "confirmed"] },
    "orders_user_open_total_idx",
  ],
  ["every user, newest", {}, "orders_newest_idx"],
  ["every user, newest, created range", { createdAfter: march, createdBefore: june }, "orders_newest_idx"],
  ["every user, newest, statuses", { statuses: ["cancelled"] }, "orders_newest_idx"],
  ["every user, newest, total range", { minTotalMinor: 15_000 }, "orders_newest_idx"],
  ["every user, newest, open status", { statuses: ["pending"] }, "orders_open_newest_idx"],
  [
    "every user, newest, open statuses + total range + created range",
    { statuses: ["processing", "shipped"], minTotalMinor: 1000, createdAfter: march },
    "orders_open_newest_idx",
  ],
  ["every user, highest total", { sort: "highest_total" }, "orders_total_idx"],
  [
    "every user, highest total, total range",
    { sort: "highest_total", minTotalMinor: 500, maxTotalMinor: 9000 },
    "orders_total_idx",
  ],
  [
    "every user, highest total, archived too",
    { sort: "highest_total", includeArchived: true },
    "orders_total_idx",
  ],
  [
    "every user, highest total, open statuses",
    { sort: "highest_total", statuses: ["confirmed", "processing", "shipped", "pending"] },
    "orders_open_total_idx",
  ],
  ["customer email, newest", { customerEmail: "E" }, "orders_email_newest_idx"],
  [
    "customer email, newest, created range + statuses",
    { customerEmail: "E", createdAfter: march, statuses: ["pending"] },
    "orders_email_open_newest_idx",
  ],
  [
    "customer email, newest, total range",
    { customerEmail: "E", maxTotalMinor: 300 },
    "orders_email_newest_idx",
  ],
  ["customer email, highest total", { customerEmail: "E", sort: "highest_total" }, "orders_email_total_idx"],
  [
    "customer email, highest total, total range",
    { customerEmail: "E", sort: "highest_total", minTotalMinor: 1000 },
    "orders_email_total_idx",
  ],
  [
    "customer email, highest total, open status",
    { customerEmail: "E", sort: "highest_total", statuses: ["shipped"] },
    "orders_email_open_total_idx",
  ],
];

const scopeIndexes = {
  user: [
    "orders_user_newest_idx",
    "orders_user_total_idx",
    "orders_user_open_newest_idx",
    "orders_user_open_total_idx",
  ],
  email: [
    "orders_email_newest_idx",
    "orders_email_total_idx",
    "orders_email_open_newest_idx",
    "orders_email_open_total_idx",
  ],
};

function statement(shape: Partial<ListOrdersQuery>, who: "big" | "typical", paged: boolean) {
  const k = who === "big" ? 0 : 1;
  const q = query({
    ...shape,
    userId: shape.userId ? (users[k] as string) : null,
    customerEmail: shape.customerEmail ? (emails[k] as string) : "",
  });
  const after = !paged
    ? null
    : q.sort === "newest"
      ? [mid.created, mid.id]
      : [mid.total, mid.created, mid.id];
  return listOrdersStatement(q, after, q.pageSize + 1);
}

describe("EXPLAIN of the list statements", () => {
  for (const [label, shape, index] of shapes) {
    for (const paged of [false, true]) {
      const name = `${label}${paged ? ", after a cursor" : ""}`;
      it(`${name}: walks ${index} in order${shape.userId || shape.customerEmail ? " (big customer)" : ""}`, async () => {
        const { sql, params } = statement(shape, "big", paged);
        const plan = await explain(sql, params);
        expect(plan, plan).not.toMatch(/Seq Scan/);
        expect(plan, plan).toMatch(new RegExp(`(Index|Index Only) Scan using ${index} on orders `));
        // No sort step: the index order is the list order, so a page reads about page_size rows.
        expect(plan, plan).not.toMatch(/Sort/);
        // The cursor is an index bound (a row comparison in the Index Cond), not a filter.
        if (paged) expect(plan, plan).toMatch(/Index Cond: .*ROW\(/);
        // A total range under NEWEST is checked on the index entry (total_minor, 0005's trailing
        // key), not on a heap row fetched for every order the walk passes.
        if (shape.sort !== "highest_total" && (shape.minTotalMinor || shape.maxTotalMinor))
          expect(plan, plan).toMatch(/Index Cond: .*total_minor [<>]= /);
        // Children, lines and payments: one index lookup each per listed order.
        for (const lookup of [
          "orders_parent_idx on orders c",
          "order_items_pkey",
          "order_payments_reference_unique",
        ])
          expect(plan, plan).toContain(lookup);
      });
      if (!shape.userId && !shape.customerEmail) continue;
      it(`${name}: reads only the customer's index range (typical customer)`, async () => {
        const { sql, params } = statement(shape, "typical", paged);
        const plan = await explain(sql, params);
        expect(plan, plan).not.toMatch(/Seq Scan/);
        const [column, indexes] = shape.userId
          ? ["user_id", scopeIndexes.user]
          : ["customer_email", scopeIndexes.email];
        expect(plan, plan).toMatch(new RegExp(`Index Scan (using|on) (${indexes.join("|")})`));
        expect(plan, plan).toMatch(new RegExp(`Index Cond: \\(+${column} = `));
      });
    }
  }

  it("the open-status indexes hold exactly the statuses that are not final", async () => {
    const rows = await shard
      .fork()
      .execute<{ indexname: string; indexdef: string }[]>(
        "select indexname, indexdef from pg_indexes where tablename = 'orders' and indexname like '%open%' order by 1",
      );
    expect(rows.map((r) => r.indexname)).toEqual([
      "orders_email_open_newest_idx",
      "orders_email_open_total_idx",
      "orders_open_newest_idx",
      "orders_open_total_idx",
      "orders_user_open_newest_idx",
      "orders_user_open_total_idx",
    ]);
    const open = ORDER_STATUSES.filter((st) => !FINAL.has(st));
    for (const r of rows)
      expect(r.indexdef).toContain(`status = ANY (ARRAY[${open.map((st) => `'${st}'::text`).join(", ")}])`);
  });

  it("ListTopCustomers: one index-only scan of orders_top_customers_idx per shard", async () => {
    for (const currency of ["EUR", "USD"]) {
      const plan = await explain(TOP_CUSTOMERS_SQL, [currency, 10]);
      expect(plan, plan).not.toMatch(/Seq Scan on orders/);
      expect(plan, plan).toMatch(/(Index (Only )?Scan using|Bitmap Index Scan on) orders_top_customers_idx/);
    }
  });
});
