import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkOrders, problemOf } from "../../src/order/order-check.js";
import type { Shard, ShardSet } from "../../src/shard/shards.js";
import { unique } from "../harness/app.js";
import { migrateShards } from "../harness/global-setup.js";
import { createShardDatabases, dropShardDatabases, openTestShards } from "../harness/shard-databases.js";
import { insertOrders, order, prng, randomOrders, type SeededOrder } from "./seed-orders.js";

// checkOrders finds each kind of broken bookkeeping, with the same rows and texts as the quadratic
// statement it replaced (kept below as the oracle). Its own database: the shared shards must stay
// consistent for the other files' checks.

const prefix = `ordercheck_${process.pid}`;
let shards: ShardSet;
let shard: Shard;
const users = Array.from({ length: 5 }, (_, i) => unique(`check${i}`));
const seeded = randomOrders({
  count: 400,
  users,
  emails: ["check@example.test"],
  from: new Date("2004-01-01T00:00:00Z"),
  to: new Date("2004-02-01T00:00:00Z"),
  rng: prng(11),
});
/** Two top-level orders that become multi-seller parents of two children each. */
const parents = seeded.filter((o) => o.totalMinor > 0 && o.paidMinor === 0).slice(0, 2);
const children = parents.flatMap((p) =>
  [0, 1].map((k) =>
    order({ ...p, parentOrderId: p.id, paidMinor: 0, refundedMinor: 0, idTimeMs: 1_072_915_200_000 + k }),
  ),
);
/** Distinct seeded single-seller orders to break, one per rule. */
const used = new Set<SeededOrder>(parents);
const pick = (ok: (o: SeededOrder) => boolean): SeededOrder => {
  const o = seeded.find((x) => !used.has(x) && ok(x)) as SeededOrder;
  used.add(o);
  return o;
};

beforeAll(async () => {
  const urls = await createShardDatabases(undefined, 1, prefix);
  await migrateShards(urls);
  shards = await openTestShards(urls);
  shard = shards.shards[0] as Shard;
  await insertOrders(shards, [...seeded, ...children]);
  // A parent holds no lines of its own, its total is its children's, and it holds the money: one
  // refunded unit of its first child's line, paid for by a captured payment.
  for (const p of parents) {
    const [c0, c1] = children.filter((c) => c.parentOrderId === p.id) as [SeededOrder, SeededOrder];
    await shard.fork().transactional(async (tx) => {
      await tx.execute("delete from order_items where order_id = ?", [p.id]);
      await tx.execute("update order_items set refunded_quantity = 1 where order_id = ?", [c0.id]);
      const unit = c0.totalMinor / c0.quantity;
      await tx.execute(
        `update orders set stock_status = 'none', total_minor = ?, paid_minor = ?, refunded_minor = ? where id = ?`,
        [c0.totalMinor + c1.totalMinor, unit, unit, p.id],
      );
      await tx.execute(
        `insert into order_payments (id, order_id, amount_minor, currency_code, provider_reference, status)
         values (?, ?, ?, ?, 'check-psp', 'captured')`,
        [`pay_${p.id.slice(4)}`, p.id, unit, p.currencyCode],
      );
    });
  }
}, 120_000);
afterAll(async () => {
  await shards?.close();
  await dropShardDatabases(undefined, 1, prefix);
});

/** The statement checkOrders ran before: a correlated subquery per order over a CTE of all lines. */
const ORACLE = `with lines as (
    select coalesce(o2.parent_order_id, o2.id) as top_id, o2.id as order_id,
           sum(i.line_total_minor) as lines_total,
           sum(i.unit_price_minor * i.refunded_quantity) as lines_refunded
    from order_items i join orders o2 on o2.id = i.order_id
    group by 1, 2
  ), per_order as (
    select o.id, o.total_minor, o.paid_minor, o.refunded_minor, o.version, o.stock_status, o.parent_order_id,
      (select coalesce(sum(l.lines_total), 0) from lines l where l.order_id = o.id) as own_lines,
      (select coalesce(sum(ch.total_minor), 0) from orders ch where ch.parent_order_id = o.id) as children_total,
      (select coalesce(sum(l.lines_refunded), 0) from lines l where l.top_id = o.id) as refunded_lines,
      (select coalesce(sum(p.amount_minor), 0) from order_payments p where p.order_id = o.id and p.status = 'captured') as captured,
      (select count(*) from order_events e where e.order_id = o.id) as events
    from orders o
  )
  select * from per_order
  where (stock_status = 'none' and total_minor <> children_total)
     or (stock_status <> 'none' and total_minor <> own_lines)
     or (parent_order_id is null and paid_minor <> captured)
     or (parent_order_id is null and refunded_minor <> refunded_lines)
     or events <> version
  order by id limit 1000`;

/** The rows the old statement finds. */
async function oracleRows(): Promise<Record<string, unknown>[]> {
  return shard.fork().execute(ORACLE);
}

describe("checkOrders", () => {
  it("finds nothing in consistent orders, parents with children and refunds included", async () => {
    expect(await oracleRows()).toEqual([]);
    expect(await checkOrders(shard.fork())).toEqual([]);
  });

  it("reports every broken rule, with the rows and texts of the statement it replaced", async () => {
    const single = pick(() => true);
    const paid = pick((o) => o.paidMinor > 0 && o.refundedMinor === 0);
    const refunded = pick((o) => o.paidMinor > o.refundedMinor);
    const history = pick(() => true);
    const several = pick((o) => o.paidMinor > 0 && o.refundedMinor === 0);
    const child = children[2] as SeededOrder;
    const parent = parents[1] as SeededOrder;
    const em = shard.fork();
    await em.execute("update orders set total_minor = total_minor + 100 where id in (?)", [
      [single.id, several.id],
    ]);
    await em.execute("update orders set paid_minor = paid_minor - 1 where id in (?)", [
      [paid.id, several.id],
    ]);
    await em.execute("update orders set refunded_minor = refunded_minor + 1 where id = ?", [refunded.id]);
    await em.execute("delete from order_events where order_id = ? and version = 1", [history.id]);
    await em.execute("update orders set total_minor = total_minor + 7 where id = ?", [child.id]);

    const found = await checkOrders(shard.fork());
    const expected = (await oracleRows()).map((r) => ({ orderId: String(r.id), problem: problemOf(r) }));
    expect(found).toEqual(expected);
    const byId = new Map(found.map((v) => [v.orderId, v.problem]));
    expect(new Set(byId.keys())).toEqual(
      new Set([single.id, several.id, paid.id, refunded.id, history.id, child.id, parent.id]),
    );
    expect(byId.get(single.id)).toBe(`total ${single.totalMinor + 100} != sum of items ${single.totalMinor}`);
    expect(byId.get(several.id)).toBe(
      `total ${several.totalMinor + 100} != sum of items ${several.totalMinor}; ` +
        `paid ${several.paidMinor - 1} != captured payments ${several.paidMinor}`,
    );
    expect(byId.get(refunded.id)).toBe(
      `refunded ${refunded.refundedMinor + 1} != refunded items ${refunded.refundedMinor}`,
    );
    expect(byId.get(history.id)).toMatch(/^version (\d+) != history rows (\d+)$/);
    // The child's own total now differs from its line, and its parent's from the children's sum.
    expect(byId.get(child.id)).toBe(`total ${child.totalMinor + 7} != sum of items ${child.totalMinor}`);
    expect(byId.get(parent.id)).toMatch(/^total \d+ != sum of children \d+$/);
  });
});
