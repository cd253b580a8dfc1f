import { Migration } from "@mikro-orm/migrations";

/**
 * ListOrders at a million orders a shard (issue 5). Two kinds of change to the list indexes of 0003,
 * both measured with bench/scenarios/list-orders.ts (docs/data-model.md, "Orders: lists and indexes"):
 *
 * - The NEWEST indexes get `total_minor` as a trailing key. It cannot change their order (`id` is
 *   unique), but it makes a total range an Index Cond checked on the index entry, so a rare total
 *   filter no longer fetches a heap row for every order the walk passes.
 * - Partial indexes over the OPEN statuses (not DELIVERED or CANCELLED: about 5% of the orders, and
 *   the ones people filter for), for each scope and sort. A filter whose statuses are all open (the
 *   values are SQL literals) implies their predicate, so its walk passes only open orders, and it
 *   ends where they end instead of running through every older order of the scope.
 *
 * On a big live shard, build them outside this migration's transaction instead, without blocking
 * writes (docs/data-model.md shows how): `create index concurrently` under a new name, then
 * `drop index concurrently` the old one and rename the new one.
 */
const OPEN = "parent_order_id is null and status in ('pending', 'confirmed', 'processing', 'shipped')";

/** The NEWEST indexes of 0003 and their leading scope column. */
const NEWEST: [string, string][] = [
  ["orders_newest_idx", ""],
  ["orders_user_newest_idx", "user_id, "],
  ["orders_email_newest_idx", "customer_email, "],
];

/** Each scope x sort of the list indexes, over open orders only. */
const OPEN_INDEXES: [string, string][] = [
  ["orders_open_newest_idx", "created_at desc, id desc, total_minor"],
  ["orders_open_total_idx", "total_minor desc, created_at desc, id desc"],
  ["orders_user_open_newest_idx", "user_id, created_at desc, id desc, total_minor"],
  ["orders_user_open_total_idx", "user_id, total_minor desc, created_at desc, id desc"],
  ["orders_email_open_newest_idx", "customer_email, created_at desc, id desc, total_minor"],
  ["orders_email_open_total_idx", "customer_email, total_minor desc, created_at desc, id desc"],
];

export class Migration0005OrderListIndexes extends Migration {
  override name = "0005-order-list-indexes";

  override up(): void {
    for (const [name, lead] of NEWEST) {
      this.addSql(`drop index ${name}`);
      this.addSql(
        `create index ${name} on orders (${lead}created_at desc, id desc, total_minor) where parent_order_id is null`,
      );
    }
    for (const [name, columns] of OPEN_INDEXES)
      this.addSql(`create index ${name} on orders (${columns}) where ${OPEN}`);
  }

  override down(): void {
    for (const [name] of OPEN_INDEXES) this.addSql(`drop index ${name}`);
    for (const [name, lead] of NEWEST) {
      this.addSql(`drop index ${name}`);
      this.addSql(
        `create index ${name} on orders (${lead}created_at desc, id desc) where parent_order_id is null`,
      );
    }
  }
}
