import { Migration } from "@mikro-orm/migrations";

/**
 * Orphan holds repaired from a list of what is owed, not by walking every live hold (issue 5).
 *
 * Until now the sweeper found holds left behind (a reservation made RELEASED, EXPIRED or FAILED
 * whose process died before its stock went back) by walking every live hold older than the intent
 * bound and asking the buyer's shard for its reservation's status. Almost all of those are simply
 * ACTIVE, so every pass of every instance read every live reservation: at 1,500 reservations/s with
 * the default 10-minute TTL, about a million rows every 5 seconds, and the CPU it took showed as
 * stalls in the cross-shard bench.
 *
 * - `hold_settlements` (buyer's shard): one row per reservation that became RELEASED, EXPIRED or
 *   FAILED, written in the same transaction as that change (reservation.repository.ts `transition`),
 *   deleted once its holds on every stock shard are settled. `due_at` is when the sweeper may settle
 *   it: now for an ended reservation; for a saga that failed, the end of its hold window, after which
 *   no hold of it can commit any more.
 * - `shop_hold_by(reservation, items, lock_ms, not_after)` (stock shards): shop_hold (0004), refused
 *   once `not_after` has passed and with its lock waits ending by then. A saga takes its holds with
 *   `not_after` = its intent's creation + half the intent bound (buyer's clock), and the sweeper
 *   fails a saga still PENDING only after the whole bound, so a hold still in flight when a saga
 *   gives up (a lost answer, a timed-out call) has committed or failed by the time the sweeper
 *   settles it. The margin (half the bound, at least 500 ms) absorbs clock skew between shards.
 */
export class Migration0006HoldSettlements extends Migration {
  override name = "0006-hold-settlements";

  override up(): void {
    this.addSql(`create table hold_settlements (
      reservation_id text collate "C" primary key references reservations (id),
      due_at timestamptz not null default now(),
      created_at timestamptz not null default now()
    )`);
    this.addSql("create index hold_settlements_due_idx on hold_settlements (due_at)");
    this.addSql(`create function shop_hold_by(reservation text, items jsonb, lock_ms integer,
  not_after timestamptz) returns jsonb
language plpgsql as $fn$
declare
  left_ms bigint := floor(extract(epoch from (not_after - clock_timestamp())) * 1000);
begin
  if left_ms <= 0 then
    return jsonb_build_object('state', 'late');
  end if;
  return shop_hold(reservation, items, least(coalesce(lock_ms, left_ms), left_ms)::integer);
end
$fn$`);
  }

  override down(): void {
    this.addSql("drop function if exists shop_hold_by(text, jsonb, integer, timestamptz)");
    this.addSql("drop table if exists hold_settlements");
  }
}
