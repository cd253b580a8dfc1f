import { Migration } from "@mikro-orm/migrations";

/**
 * `shop_reserve(requests jsonb, lock_ms integer) returns jsonb`: reservations whose stock is on the
 * buyer's own shard, several at once, in ONE statement (one round trip, one implicit transaction).
 * It does what the transactional path does (src/reservation/reservation.service.ts, holds.ts) with
 * the same rows and checks: the idempotency key is claimed first; every item's stock row is locked
 * and checked; if any item is short the key is given back and nothing else is written; otherwise
 * stock moves available → held with its ledger row and hold, the reservation and its items are
 * inserted ACTIVE, and the answer is stored on the key. The CHECK constraints stay the guard.
 *
 * Why a function: a statement cannot take "all items or none" with a plain CTE when some item is
 * short (the other items' updates would commit), and node-postgres cannot pipeline BEGIN … COMMIT.
 * Several requests for one hot product share the statement (src/reservation/batcher.ts): the row
 * is locked once for the lot instead of once per caller.
 *
 * Input, one element per request (items sorted by product id, `i` = the item's index in the
 * request): {id, bucket, user, scope, key, hash, ttl, items: [{p, w, q, m, i}]} where w is '' for
 * "any warehouse" and m is the ledger row id. Output, one element per request, in order:
 * {state: 'done', response} | {state: 'prior', hash, response} (the key existed) |
 * {state: 'short', short: [{productId, warehouseId, requested, available, i}]}.
 * `lock_ms` (null: none) bounds every lock wait of the statement: the caller's time left.
 */
export class Migration0004ReserveFunction extends Migration {
  override name = "0004-reserve-function";

  override up(): void {
    this.addSql(`create function shop_reserve(requests jsonb, lock_ms integer) returns jsonb
language plpgsql as $fn$
declare
  req jsonb;
  item jsonb;
  results jsonb := '[]'::jsonb;
  prior record;
  wh text;
  avail bigint;
  short jsonb;
  products text[];
  warehouses text[];
  quantities bigint[];
  movements text[];
  made record;
  iso constant text := 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"';
  answer jsonb;
begin
  if lock_ms is not null then
    perform set_config('lock_timeout', lock_ms::text, true);
  end if;
  foreach req in array array(select jsonb_array_elements(requests)) loop
    insert into idempotency_records (scope, key, request_hash, response)
    values (req->>'scope', req->>'key', req->>'hash', 'null'::jsonb)
    on conflict (scope, key) do nothing;
    if not found then
      select request_hash, response into prior
      from idempotency_records where scope = req->>'scope' and key = req->>'key';
      results := results || jsonb_build_array(jsonb_build_object(
        'state', 'prior', 'hash', prior.request_hash, 'response', prior.response));
      continue;
    end if;

    short := '[]'::jsonb;
    products := '{}'; warehouses := '{}'; quantities := '{}'; movements := '{}';
    foreach item in array array(select jsonb_array_elements(req->'items')) loop
      wh := null; avail := null;
      select warehouse_id, available into wh, avail from stock
      where product_id = item->>'p' and (item->>'w' = '' or warehouse_id = item->>'w')
      order by available desc, warehouse_id limit 1
      for update;
      if wh is null or avail < (item->>'q')::bigint then
        short := short || jsonb_build_array(jsonb_build_object(
          'productId', item->>'p', 'warehouseId', item->>'w', 'requested', (item->>'q')::bigint,
          'available', coalesce(avail, 0), 'i', (item->>'i')::int));
      else
        products := products || (item->>'p');
        warehouses := warehouses || wh;
        quantities := quantities || (item->>'q')::bigint;
        movements := movements || (item->>'m');
      end if;
    end loop;

    if short <> '[]'::jsonb then
      delete from idempotency_records where scope = req->>'scope' and key = req->>'key';
      results := results || jsonb_build_array(jsonb_build_object('state', 'short', 'short', short));
      continue;
    end if;

    update stock s set available = s.available - t.q, held = s.held + t.q,
      version = s.version + 1, updated_at = now()
    from unnest(products, warehouses, quantities) as t(p, w, q)
    where s.product_id = t.p and s.warehouse_id = t.w;
    insert into stock_holds (reservation_id, product_id, warehouse_id, quantity, status)
    select req->>'id', t.p, t.w, t.q, 'held' from unnest(products, warehouses, quantities) as t(p, w, q);
    insert into stock_movements (id, product_id, warehouse_id, kind, quantity,
      d_available, d_held, d_sold, d_received, d_written_off, reason, reference)
    select t.m, t.p, t.w, 'held', t.q, -t.q, t.q, 0, 0, 0, 'reservation', req->>'id'
    from unnest(movements, products, warehouses, quantities) as t(m, p, w, q);
    -- Timestamps at millisecond precision, like the JavaScript Dates every other read makes of them.
    insert into reservations (id, bucket, user_id, status, expires_at, created_at, updated_at)
    values (req->>'id', (req->>'bucket')::smallint, req->>'user', 'active',
      date_trunc('milliseconds', now() + make_interval(secs => (req->>'ttl')::int)),
      date_trunc('milliseconds', now()), date_trunc('milliseconds', now()))
    returning expires_at, created_at, updated_at, version into made;
    insert into reservation_items (reservation_id, product_id, warehouse_id, quantity)
    select req->>'id', t.p, t.w, t.q from unnest(products, warehouses, quantities) as t(p, w, q);

    -- The same JSON the transactional path stores (idempotency.ts: dates as {"$date": ISO}).
    answer := jsonb_build_object(
      'id', req->>'id', 'userId', req->>'user', 'status', 'active',
      'items', (select jsonb_agg(jsonb_build_object('productId', t.p, 'warehouseId', t.w, 'quantity', t.q)
                 order by t.n) from unnest(products, warehouses, quantities) with ordinality as t(p, w, q, n)),
      'expiresAt', jsonb_build_object('$date', to_char(made.expires_at at time zone 'UTC', iso)),
      'createdAt', jsonb_build_object('$date', to_char(made.created_at at time zone 'UTC', iso)),
      'updatedAt', jsonb_build_object('$date', to_char(made.updated_at at time zone 'UTC', iso)),
      'version', made.version);
    update idempotency_records set response = answer where scope = req->>'scope' and key = req->>'key';
    results := results || jsonb_build_array(jsonb_build_object('state', 'done', 'response', answer));
  end loop;
  return results;
end
$fn$`);
  }

  override down(): void {
    this.addSql("drop function if exists shop_reserve(jsonb, integer)");
  }
}
