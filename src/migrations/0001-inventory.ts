import { Migration } from "@mikro-orm/migrations";

/**
 * Products, stock and the stock ledger (seller-owned rows), and idempotency records. The schema is
 * the guard against oversell: CHECK constraints keep every stock term >= 0 and the balance
 * available + held + sold = received - written_off true in every committed row, whatever the code does.
 * docs/data-model.md says which query each index serves.
 */
export class Migration0001Inventory extends Migration {
  override name = "0001-inventory";

  override up(): void {
    this.addSql("create extension if not exists pg_trgm");
    this.addSql(`create table products (
      id text collate "C" primary key,
      bucket smallint not null,
      seller_id text not null,
      sku text not null,
      name text not null,
      description text not null default '',
      category text not null default '',
      price_minor bigint not null check (price_minor >= 0),
      currency_code char(3) not null check (currency_code ~ '^[A-Z]{3}$'),
      version bigint not null default 1,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      constraint products_seller_sku_unique unique (seller_id, sku)
    )`);
    // ListProducts: one seller newest / by price; all shards by price; category by price or newest.
    this.addSql("create index products_seller_id_idx on products (seller_id, id)");
    this.addSql("create index products_seller_price_idx on products (seller_id, price_minor, id)");
    this.addSql("create index products_price_idx on products (price_minor, id)");
    this.addSql("create index products_category_price_idx on products (category, price_minor, id)");
    this.addSql("create index products_category_id_idx on products (category, id)");
    // name_contains (ILIKE '%text%') is served by a trigram index on the lower-cased name.
    this.addSql("create index products_name_trgm_idx on products using gin (lower(name) gin_trgm_ops)");

    this.addSql(`create table stock (
      product_id text collate "C" not null references products (id),
      warehouse_id text not null,
      available bigint not null default 0 check (available >= 0),
      held bigint not null default 0 check (held >= 0),
      sold bigint not null default 0 check (sold >= 0),
      received bigint not null default 0 check (received >= 0),
      written_off bigint not null default 0 check (written_off >= 0),
      version bigint not null default 1,
      updated_at timestamptz not null default now(),
      primary key (product_id, warehouse_id),
      constraint stock_balance check (available + held + sold = received - written_off)
    )`);

    this.addSql(`create table stock_movements (
      id text collate "C" primary key,
      product_id text collate "C" not null,
      warehouse_id text not null,
      kind text not null check (kind in ('received', 'written_off', 'held', 'released', 'sold', 'returned')),
      quantity bigint not null check (quantity > 0),
      d_available bigint not null,
      d_held bigint not null,
      d_sold bigint not null,
      d_received bigint not null,
      d_written_off bigint not null,
      reason text not null,
      reference text not null default '',
      created_at timestamptz not null default now(),
      foreign key (product_id, warehouse_id) references stock (product_id, warehouse_id)
    )`);
    // ListStockMovements (newest first, optionally one warehouse) and the ledger check (sums per row).
    this.addSql("create index stock_movements_product_idx on stock_movements (product_id, warehouse_id, id)");
    this.addSql("create index stock_movements_product_id_idx on stock_movements (product_id, id)");

    // One row per (scope, key): written in the same transaction as the effect it guards, so a
    // concurrent replay blocks on the unique key until the first commits, then reads its answer.
    this.addSql(`create table idempotency_records (
      scope text not null,
      key text not null,
      request_hash text not null,
      response jsonb not null,
      created_at timestamptz not null default now(),
      primary key (scope, key)
    )`);
    this.addSql("create index idempotency_records_created_idx on idempotency_records (created_at)");
  }

  override down(): void {
    this.addSql("drop table if exists idempotency_records");
    this.addSql("drop table if exists stock_movements");
    this.addSql("drop table if exists stock");
    this.addSql("drop table if exists products");
  }
}
