import { Migration } from "@mikro-orm/migrations";

/**
 * Reservations (buyer-owned, on the buyer's shard) and stock holds (seller-owned, on the stock's
 * shard). The hold ledger has one row per reservation and product: the primary key makes a replayed
 * or repaired hold step unable to take stock twice, because the decrement and the hold insert share
 * one transaction.
 */
export class Migration0002Reservations extends Migration {
  override name = "0002-reservations";

  override up(): void {
    this.addSql(`create table reservations (
      id text collate "C" primary key,
      bucket smallint not null,
      user_id text not null,
      status text not null check (status in ('pending', 'active', 'confirmed', 'released', 'expired', 'failed')),
      expires_at timestamptz not null,
      version bigint not null default 1,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    )`);
    // ListReservations: one user's, newest first (keyset on id).
    this.addSql("create index reservations_user_idx on reservations (user_id, id)");
    // The sweeper: ACTIVE past expiry, PENDING past the intent bound. Partial: terminal rows cost nothing.
    this.addSql(
      "create index reservations_active_expiry_idx on reservations (expires_at) where status = 'active'",
    );
    this.addSql(
      "create index reservations_pending_idx on reservations (created_at) where status = 'pending'",
    );

    this.addSql(`create table reservation_items (
      reservation_id text collate "C" not null references reservations (id),
      product_id text collate "C" not null,
      warehouse_id text not null default '',
      quantity bigint not null check (quantity > 0),
      primary key (reservation_id, product_id)
    )`);

    this.addSql(`create table stock_holds (
      reservation_id text collate "C" not null,
      product_id text collate "C" not null,
      warehouse_id text not null,
      quantity bigint not null check (quantity > 0),
      status text not null check (status in ('held', 'released', 'sold')),
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      primary key (reservation_id, product_id),
      foreign key (product_id, warehouse_id) references stock (product_id, warehouse_id)
    )`);
    // The orphan sweep and the invariant check (held = sum of live holds) read live holds only.
    this.addSql("create index stock_holds_live_idx on stock_holds (created_at) where status = 'held'");
    this.addSql(
      "create index stock_holds_product_idx on stock_holds (product_id, warehouse_id) where status = 'held'",
    );
  }

  override down(): void {
    this.addSql("drop table if exists stock_holds");
    this.addSql("drop table if exists reservation_items");
    this.addSql("drop table if exists reservations");
  }
}
