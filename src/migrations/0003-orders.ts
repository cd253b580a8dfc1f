import { Migration } from "@mikro-orm/migrations";

/**
 * Orders, on the buyer's shard: orders (a single-seller order, or a multi-seller parent with one
 * child per seller), their items, payments, and the event history that is both the audit log and
 * the replay source of the watch streams. A hold can now also be `returned` (sold, then given back
 * by a cancel), so a cancel moves each hold exactly once.
 *
 * docs/orders.md describes the state machine; docs/data-model.md lists which query each index serves.
 */
export class Migration0003Orders extends Migration {
  override name = "0003-orders";

  override up(): void {
    this.addSql(`create table orders (
      id text collate "C" primary key,
      bucket smallint not null,
      order_number text collate "C" not null,
      user_id text not null,
      customer_email text not null,
      status text not null check (status in ('pending', 'confirmed', 'processing', 'shipped', 'delivered', 'cancelled')),
      parent_order_id text collate "C" references orders (id),
      seller_id text not null default '',
      reservation_id text collate "C" not null,
      currency_code char(3) not null check (currency_code ~ '^[A-Z]{3}$'),
      total_minor bigint not null check (total_minor >= 0),
      paid_minor bigint not null default 0 check (paid_minor >= 0 and paid_minor <= total_minor),
      refunded_minor bigint not null default 0 check (refunded_minor >= 0 and refunded_minor <= paid_minor),
      stock_status text not null check (stock_status in ('none', 'reserved', 'sold', 'returning', 'returned')),
      archived boolean not null default false,
      version bigint not null default 1 check (version >= 1),
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      constraint orders_number_unique unique (order_number)
    )`);
    // One top-level order per reservation: a replayed or raced confirmation cannot make a second.
    this.addSql(
      "create unique index orders_reservation_idx on orders (reservation_id) where parent_order_id is null",
    );
    // A parent's children.
    this.addSql(
      "create index orders_parent_idx on orders (parent_order_id, id) where parent_order_id is not null",
    );
    // The repair pass: orders whose stock is not yet sold (after creation) or not yet returned (after a cancel).
    this.addSql(
      "create index orders_stock_repair_idx on orders (created_at) where stock_status in ('reserved', 'returning')",
    );

    // --- ListOrders and ListTopCustomers indexes (top-level orders only: children are never listed) ---
    // One user, NEWEST (with the created_after/created_before range on the same columns).
    this.addSql(
      "create index orders_user_newest_idx on orders (user_id, created_at desc, id desc) where parent_order_id is null",
    );
    // One user, HIGHEST_TOTAL (ties newest first).
    this.addSql(
      "create index orders_user_total_idx on orders (user_id, total_minor desc, created_at desc, id desc) where parent_order_id is null",
    );
    // Operator scope (every user of the shard), NEWEST and HIGHEST_TOTAL.
    this.addSql(
      "create index orders_newest_idx on orders (created_at desc, id desc) where parent_order_id is null",
    );
    this.addSql(
      "create index orders_total_idx on orders (total_minor desc, created_at desc, id desc) where parent_order_id is null",
    );
    // Operator scope filtered by customer email, both sorts.
    this.addSql(
      "create index orders_email_newest_idx on orders (customer_email, created_at desc, id desc) where parent_order_id is null",
    );
    this.addSql(
      "create index orders_email_total_idx on orders (customer_email, total_minor desc, created_at desc, id desc) where parent_order_id is null",
    );
    // ListTopCustomers: one aggregate per shard over paid, non-archived top-level orders.
    this.addSql(
      `create index orders_top_customers_idx on orders (currency_code, user_id) include (paid_minor, refunded_minor)
       where parent_order_id is null and not archived and paid_minor > 0`,
    );

    this.addSql(`create table order_items (
      order_id text collate "C" not null references orders (id),
      product_id text collate "C" not null,
      seller_id text not null,
      warehouse_id text not null,
      sku text not null,
      name text not null,
      quantity bigint not null check (quantity > 0),
      unit_price_minor bigint not null check (unit_price_minor >= 0),
      line_total_minor bigint not null,
      refunded_quantity bigint not null default 0 check (refunded_quantity >= 0 and refunded_quantity <= quantity),
      primary key (order_id, product_id),
      constraint order_items_line_total check (line_total_minor = unit_price_minor * quantity)
    )`);

    this.addSql(`create table order_payments (
      id text collate "C" primary key,
      order_id text collate "C" not null references orders (id),
      amount_minor bigint not null check (amount_minor > 0),
      currency_code char(3) not null,
      provider_reference text not null,
      status text not null check (status in ('authorized', 'captured', 'failed')),
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      constraint order_payments_reference_unique unique (order_id, provider_reference)
    )`);

    // The history. (order_id, version) orders one order's events (WatchOrder resumes by version);
    // (user_id, seq) orders one user's events in commit order (WatchOrders resumes by seq): seq comes
    // from the user's order_streams row, whose row lock serialises a user's changes until commit.
    this.addSql(`create table order_events (
      user_id text not null,
      seq bigint not null,
      order_id text collate "C" not null references orders (id),
      version bigint not null,
      kind text not null check (kind in ('created', 'status', 'payment', 'refund', 'archived')),
      from_status text not null default '',
      to_status text not null,
      reason text not null default '',
      actor text not null,
      created_at timestamptz not null default now(),
      primary key (user_id, seq),
      constraint order_events_version_unique unique (order_id, version)
    )`);
    this.addSql(`create table order_streams (
      user_id text primary key,
      last_seq bigint not null check (last_seq >= 0)
    )`);

    this.addSql("alter table stock_holds drop constraint stock_holds_status_check");
    this.addSql(
      "alter table stock_holds add constraint stock_holds_status_check check (status in ('held', 'released', 'sold', 'returned'))",
    );
  }

  override down(): void {
    this.addSql("alter table stock_holds drop constraint stock_holds_status_check");
    this.addSql(
      "alter table stock_holds add constraint stock_holds_status_check check (status in ('held', 'released', 'sold'))",
    );
    this.addSql("drop table if exists order_streams");
    this.addSql("drop table if exists order_events");
    this.addSql("drop table if exists order_payments");
    this.addSql("drop table if exists order_items");
    this.addSql("drop table if exists orders");
  }
}
