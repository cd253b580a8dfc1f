import type { EntityManager } from "@mikro-orm/postgresql";

/** The order half of the consistency check (`npm run check-stock`), one shard at a time. */

type Row = Record<string, unknown>;

/** A violation of the order bookkeeping found by checkOrders. */
export interface OrderViolation {
  orderId: string;
  problem: string;
}

/**
 * The order half of the consistency check, on one shard: every order's total equals the sum of its
 * lines (a parent's, the sum of its children's totals); paid equals its captured payments; refunded
 * equals its refunded lines; the history has one row per version.
 */
export async function checkOrders(em: EntityManager): Promise<OrderViolation[]> {
  const rows = await em.execute<Row[]>(
    `with lines as (
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
     order by id limit 1000`,
  );
  return rows.map((r) => {
    const problems: string[] = [];
    const top = r.parent_order_id === null;
    if (r.stock_status === "none" && Number(r.total_minor) !== Number(r.children_total))
      problems.push(`total ${r.total_minor} != sum of children ${r.children_total}`);
    if (r.stock_status !== "none" && Number(r.total_minor) !== Number(r.own_lines))
      problems.push(`total ${r.total_minor} != sum of items ${r.own_lines}`);
    if (top && Number(r.paid_minor) !== Number(r.captured))
      problems.push(`paid ${r.paid_minor} != captured payments ${r.captured}`);
    if (top && Number(r.refunded_minor) !== Number(r.refunded_lines))
      problems.push(`refunded ${r.refunded_minor} != refunded items ${r.refunded_lines}`);
    if (Number(r.events) !== Number(r.version))
      problems.push(`version ${r.version} != history rows ${r.events}`);
    return { orderId: String(r.id), problem: problems.join("; ") };
  });
}
