import type { EntityManager } from "@mikro-orm/postgresql";
import type { ProductSort, StockViolation } from "./inventory.model.js";
import { PRODUCT_COLUMNS } from "./inventory.repository.js";

type Row = Record<string, unknown>;

/** The keyset order of each product sort: the columns compared, and the direction. */
export const PRODUCT_ORDER: Record<ProductSort, { columns: string[]; desc: boolean }> = {
  newest: { columns: ["id"], desc: true },
  price_asc: { columns: ["price_minor", "id"], desc: false },
  price_desc: { columns: ["price_minor", "id"], desc: true },
};

export interface ProductFilter {
  sellerId: string | null;
  nameContains: string;
  category: string;
  minPriceMinor: number | null;
  maxPriceMinor: number | null;
}

/**
 * One page of products on one shard, strictly after `after` in the sort's keyset order. A row-value
 * comparison ((price_minor, id) > (?, ?)) lets Postgres walk the matching index from the cursor.
 */
export async function selectProductPage(
  em: EntityManager,
  filter: ProductFilter,
  sort: ProductSort,
  after: (string | number)[] | null,
  limit: number,
): Promise<Row[]> {
  const where: string[] = [];
  const params: unknown[] = [];
  if (filter.sellerId !== null) {
    where.push("seller_id = ?");
    params.push(filter.sellerId);
  }
  if (filter.nameContains) {
    where.push("lower(name) like ?");
    params.push(`%${escapeLike(filter.nameContains.toLowerCase())}%`);
  }
  if (filter.category) {
    where.push("category = ?");
    params.push(filter.category);
  }
  if (filter.minPriceMinor !== null) {
    where.push("price_minor >= ?");
    params.push(filter.minPriceMinor);
  }
  if (filter.maxPriceMinor !== null) {
    where.push("price_minor <= ?");
    params.push(filter.maxPriceMinor);
  }
  const order = PRODUCT_ORDER[sort];
  if (after) {
    const cols = order.columns.join(", ");
    where.push(`(${cols}) ${order.desc ? "<" : ">"} (${order.columns.map(() => "?").join(", ")})`);
    params.push(...after);
  }
  const dir = order.desc ? "desc" : "asc";
  const sql = `select ${PRODUCT_COLUMNS} from products ${where.length ? `where ${where.join(" and ")}` : ""}
    order by ${order.columns.map((c) => `${c} ${dir}`).join(", ")} limit ?`;
  return em.execute<Row[]>(sql, [...params, limit]);
}

/** The sort key of a product row, as stored in page tokens. */
export function productSortKey(
  sort: ProductSort,
  row: { id: string; price: { amountMinor: number } },
): (string | number)[] {
  return sort === "newest" ? [row.id] : [row.price.amountMinor, row.id];
}

function escapeLike(s: string): string {
  return s.replace(/[\\%_]/g, (c) => `\\${c}`);
}

/**
 * Checks the stock invariant on one shard: the balance, every term >= 0, and every column equal to
 * the sum of its ledger deltas. Returns how many rows were checked and every violation.
 */
export async function checkShardStock(
  em: EntityManager,
  shard: number,
): Promise<{ checked: number; violations: StockViolation[] }> {
  const rows = await em.execute<Row[]>(
    `with ledger as (
       select product_id, warehouse_id, sum(d_available) la, sum(d_held) lh, sum(d_sold) ls,
              sum(d_received) lr, sum(d_written_off) lw
       from stock_movements group by product_id, warehouse_id
     ), holds as (
       select product_id, warehouse_id, sum(quantity) hq from stock_holds where status = 'held'
       group by product_id, warehouse_id
     )
     select s.product_id, s.warehouse_id, s.available, s.held, s.sold, s.received, s.written_off,
       coalesce(l.la, 0) la, coalesce(l.lh, 0) lh, coalesce(l.ls, 0) ls, coalesce(l.lr, 0) lr, coalesce(l.lw, 0) lw,
       coalesce(hs.hq, 0) hq
     from stock s left join ledger l using (product_id, warehouse_id) left join holds hs using (product_id, warehouse_id)`,
  );
  const violations: StockViolation[] = [];
  for (const r of rows) {
    const [a, h, s, rc, w] = [r.available, r.held, r.sold, r.received, r.written_off].map(Number) as [
      number,
      number,
      number,
      number,
      number,
    ];
    const base = { shard, productId: String(r.product_id), warehouseId: String(r.warehouse_id) };
    if (a + h + s !== rc - w) {
      violations.push({
        ...base,
        rule: "balance",
        detail: `available ${a} + held ${h} + sold ${s} != received ${rc} - written_off ${w}`,
      });
    }
    if (Math.min(a, h, s, rc, w) < 0)
      violations.push({
        ...base,
        rule: "non_negative",
        detail: `a term is negative: ${a}/${h}/${s}/${rc}/${w}`,
      });
    if (h !== Number(r.hq))
      violations.push({ ...base, rule: "holds", detail: `held ${h} != live holds ${Number(r.hq)}` });
    const ledger = [r.la, r.lh, r.ls, r.lr, r.lw].map(Number);
    const names = ["available", "held", "sold", "received", "written_off"];
    [a, h, s, rc, w].forEach((v, i) => {
      if (v !== ledger[i])
        violations.push({ ...base, rule: "ledger", detail: `${names[i]} ${v} != ledger sum ${ledger[i]}` });
    });
  }
  return { checked: rows.length, violations };
}
