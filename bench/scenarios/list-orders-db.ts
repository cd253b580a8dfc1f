/**
 * Scenario 5 in the database: EXPLAIN (ANALYZE, BUFFERS) of the exact statement listOrderIds sends
 * (listOrdersStatement) for each case, reduced to the facts the table shows; the product's order
 * check (checkOrders) on a sample of the seeded buyers; a check of the ids the loader made.
 */
import type { EntityManager } from "@mikro-orm/postgresql";
import { checkOrders, type OrderViolation } from "../../src/order/order-check.js";
import { parseId } from "../../src/shard/ids.js";
import { bucketOfUser } from "../../src/shard/router.js";
import type { Shard } from "../../src/shard/shards.js";

/** A plan reduced to what explains a list's latency. */
export interface PlanSummary {
  /** Indexes the plan reads, in plan order. */
  indexes: string[];
  seqScan: boolean;
  /** Rows fed into the largest Sort node (0: no sort; the index order is the list order). */
  sortedRows: number;
  /** Rows the scans produced or threw away by filter (index order walked, or bitmap heap rows). */
  rowsRead: number;
  /** The cursor is an index bound (a row comparison in an Index Cond), not a filter. */
  cursorInIndex: boolean;
  executionMs: number;
  sharedBlocks: number;
  /** The plan as text, one node a line (for the JSON results). */
  outline: string[];
}

interface PlanNode {
  "Node Type": string;
  "Index Name"?: string;
  "Relation Name"?: string;
  "Actual Rows"?: number;
  "Actual Loops"?: number;
  "Rows Removed by Filter"?: number;
  "Rows Removed by Index Recheck"?: number;
  "Index Cond"?: string;
  Filter?: string;
  "Shared Hit Blocks"?: number;
  "Shared Read Blocks"?: number;
  Plans?: PlanNode[];
}

/** EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) of one statement, summarised. */
export async function explain(em: EntityManager, sql: string, params: unknown[]): Promise<PlanSummary> {
  const rows = await em.execute<Record<string, unknown>[]>(
    `explain (analyze, buffers, format json) ${sql}`,
    params,
  );
  const raw = rows[0]?.["QUERY PLAN"];
  const doc = (typeof raw === "string" ? JSON.parse(raw) : raw) as {
    Plan: PlanNode;
    "Execution Time": number;
  }[];
  const top = doc[0] as { Plan: PlanNode; "Execution Time": number };
  const s: PlanSummary = {
    indexes: [],
    seqScan: false,
    sortedRows: 0,
    rowsRead: 0,
    cursorInIndex: false,
    executionMs: top["Execution Time"],
    sharedBlocks: (top.Plan["Shared Hit Blocks"] ?? 0) + (top.Plan["Shared Read Blocks"] ?? 0),
    outline: [],
  };
  const walk = (n: PlanNode, depth: number) => {
    const type = n["Node Type"];
    const loops = n["Actual Loops"] ?? 1;
    const rows = (n["Actual Rows"] ?? 0) * loops;
    const removed = ((n["Rows Removed by Filter"] ?? 0) + (n["Rows Removed by Index Recheck"] ?? 0)) * loops;
    if (n["Index Name"] && !s.indexes.includes(n["Index Name"])) s.indexes.push(n["Index Name"]);
    if (type === "Seq Scan") s.seqScan = true;
    if (/^(Seq Scan|Index Scan|Index Only Scan|Bitmap Heap Scan)$/.test(type)) s.rowsRead += rows + removed;
    if (/Sort$/.test(type))
      s.sortedRows = Math.max(
        s.sortedRows,
        ...(n.Plans ?? []).map((c) => (c["Actual Rows"] ?? 0) * (c["Actual Loops"] ?? 1)),
      );
    if (/ROW\(/.test(n["Index Cond"] ?? "")) s.cursorInIndex = true;
    const on = n["Index Name"]
      ? ` using ${n["Index Name"]}`
      : n["Relation Name"]
        ? ` on ${n["Relation Name"]}`
        : "";
    const cond = [n["Index Cond"] && `cond ${n["Index Cond"]}`, n.Filter && `filter ${n.Filter}`]
      .filter(Boolean)
      .join("; ");
    s.outline.push(
      `${"  ".repeat(depth)}${type}${on} rows=${rows}${removed ? ` removed=${removed}` : ""}${cond ? ` (${cond})` : ""}`,
    );
    for (const c of n.Plans ?? []) walk(c, depth + 1);
  };
  walk(top.Plan, 0);
  return s;
}

/**
 * checkOrders (src/order/order-check.ts) over every order of `users` random buyers. The check's
 * per-order subqueries scan a CTE once per order (quadratic: about a minute at 20k orders), so at
 * 1M it cannot run whole. Instead, in one transaction, temporary tables named like the order tables
 * hold the sample's rows (all orders of each sampled buyer, with children, lines, payments and
 * history); temporary tables come first on the search path, so the unchanged check reads them.
 */
export async function checkOrdersSample(
  shard: Shard,
  users: number,
): Promise<{ orders: number; violations: OrderViolation[] }> {
  return shard.fork().transactional(async (tx) => {
    const sample = (
      await tx.execute<{ user_id: string }[]>("select user_id from order_streams order by random() limit ?", [
        users,
      ])
    ).map((r) => r.user_id);
    await tx.execute(
      "create temp table orders on commit drop as select * from public.orders where user_id in (?)",
      [sample],
    );
    for (const table of ["order_items", "order_payments", "order_events"])
      await tx.execute(
        `create temp table ${table} on commit drop as
         select t.* from public.${table} t where t.order_id in (select id from pg_temp.orders)`,
      );
    await tx.execute(
      "analyze pg_temp.orders, pg_temp.order_items, pg_temp.order_payments, pg_temp.order_events",
    );
    const [count] = await tx.execute<{ c: string }[]>("select count(*) as c from orders");
    return { orders: Number(count?.c ?? 0), violations: await checkOrders(tx) };
  });
}

/**
 * Ids made in SQL by the loader must be what newId makes: parseId accepts them, their bucket is the
 * buyer's (what routes ListOrders' page loads) and their time is created_at's millisecond. Returns
 * the number of bad ones in a random sample.
 */
export async function checkSeededIds(em: EntityManager, sample: number): Promise<number> {
  const rows = await em.execute<{ id: string; user_id: string; ms: string; reservation_id: string }[]>(
    `select id, user_id, reservation_id, floor(extract(epoch from created_at) * 1000)::bigint::text as ms
     from orders order by random() limit ?`,
    [sample],
  );
  let bad = 0;
  for (const r of rows) {
    try {
      const id = parseId(r.id, "ord", "id");
      const res = parseId(r.reservation_id, "res", "reservation_id");
      const bucket = bucketOfUser(r.user_id);
      if (id.bucket !== bucket || res.bucket !== bucket || id.timeMs !== Number(r.ms)) bad++;
    } catch {
      bad++;
    }
  }
  return bad;
}
