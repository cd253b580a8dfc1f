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
  short jsonb;
  iso constant text := 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"';
  created text := to_char(date_trunc('milliseconds', now()) at time zone 'UTC', iso);
  answer jsonb;
  items jsonb;
  picked int[];
  k int;
  best int;
  -- Every stock row of the batch's products, locked up front in (product, warehouse) order, the
  -- units each still has as this batch leaves them, and what the batch took from each.
  sp text[];
  sw text[];
  sa bigint[];
  st bigint[];
  -- What the batch writes at the end, one statement per table.
  rid text[] := '{}';
  rbucket smallint[] := '{}';
  ruser text[] := '{}';
  rttl int[] := '{}';
  hres text[] := '{}';
  hp text[] := '{}';
  hw text[] := '{}';
  hq bigint[] := '{}';
  hm text[] := '{}';
begin
  if lock_ms is not null then
    perform set_config('lock_timeout', lock_ms::text, true);
  end if;
  -- One sorted lock order for every batch: concurrent batches wait for each other, never deadlock.
  select coalesce(array_agg(product_id order by product_id, warehouse_id), '{}'),
         coalesce(array_agg(warehouse_id order by product_id, warehouse_id), '{}'),
         coalesce(array_agg(available order by product_id, warehouse_id), '{}'),
         coalesce(array_agg(0::bigint), '{}')
  into sp, sw, sa, st
  from (select product_id, warehouse_id, available from stock
        where product_id in (select i->>'p' from jsonb_array_elements(requests) r,
                             jsonb_array_elements(r->'items') i)
        order by product_id, warehouse_id
        for update) locked;

  foreach req in array array(select jsonb_array_elements(requests)) loop
    -- A key seen before (committed, or earlier in this batch): its answer, nothing else.
    select request_hash, response into prior
    from idempotency_records where scope = req->>'scope' and key = req->>'key';
    if found then
      results := results || jsonb_build_array(jsonb_build_object(
        'state', 'prior', 'hash', prior.request_hash, 'response', prior.response));
      continue;
    end if;

    -- A stock row per item: the asked warehouse, or the one with the most units (ties: first id).
    short := '[]'::jsonb;
    picked := '{}';
    foreach item in array array(select jsonb_array_elements(req->'items')) loop
      best := null;
      k := array_position(sp, item->>'p');
      while k is not null and k <= array_length(sp, 1) and sp[k] = item->>'p' loop
        if (item->>'w' = '' or sw[k] = item->>'w') and (best is null or sa[k] > sa[best]) then
          best := k;
        end if;
        k := k + 1;
      end loop;
      if best is null or sa[best] < (item->>'q')::bigint then
        short := short || jsonb_build_array(jsonb_build_object(
          'productId', item->>'p', 'warehouseId', item->>'w', 'requested', (item->>'q')::bigint,
          'available', coalesce(sa[best], 0), 'i', (item->>'i')::int));
      end if;
      picked := picked || best;
    end loop;
    if short <> '[]'::jsonb then
      results := results || jsonb_build_array(jsonb_build_object('state', 'short', 'short', short));
      continue;
    end if;

    items := '[]'::jsonb;
    k := 0;
    foreach item in array array(select jsonb_array_elements(req->'items')) loop
      k := k + 1;
      items := items || jsonb_build_array(jsonb_build_object(
        'productId', item->>'p', 'warehouseId', sw[picked[k]], 'quantity', (item->>'q')::bigint));
    end loop;
    -- The same JSON the transactional path stores (idempotency.ts: dates as {"$date": ISO}).
    answer := jsonb_build_object(
      'id', req->>'id', 'userId', req->>'user', 'status', 'active', 'items', items,
      'expiresAt', jsonb_build_object('$date', to_char(date_trunc('milliseconds',
        now() + make_interval(secs => (req->>'ttl')::int)) at time zone 'UTC', iso)),
      'createdAt', jsonb_build_object('$date', created),
      'updatedAt', jsonb_build_object('$date', created),
      'version', 1);
    -- The key with its answer. Taken meanwhile by another transaction (we waited for it to commit):
    -- that one's answer stands and this request takes nothing.
    insert into idempotency_records (scope, key, request_hash, response)
    values (req->>'scope', req->>'key', req->>'hash', answer)
    on conflict (scope, key) do nothing;
    if not found then
      select request_hash, response into prior
      from idempotency_records where scope = req->>'scope' and key = req->>'key';
      results := results || jsonb_build_array(jsonb_build_object(
        'state', 'prior', 'hash', prior.request_hash, 'response', prior.response));
      continue;
    end if;

    k := 0;
    foreach item in array array(select jsonb_array_elements(req->'items')) loop
      k := k + 1;
      best := picked[k];
      sa[best] := sa[best] - (item->>'q')::bigint;
      st[best] := st[best] + (item->>'q')::bigint;
      hres := hres || (req->>'id');
      hp := hp || (item->>'p');
      hw := hw || sw[best];
      hq := hq || (item->>'q')::bigint;
      hm := hm || (item->>'m');
    end loop;
    rid := rid || (req->>'id');
    rbucket := rbucket || (req->>'bucket')::smallint;
    ruser := ruser || (req->>'user');
    rttl := rttl || (req->>'ttl')::int;
    results := results || jsonb_build_array(jsonb_build_object('state', 'done', 'response', answer));
  end loop;

  if rid = '{}' then
    return results;
  end if;
  -- One write per stock row for the whole batch: a hot product's row changes once, not per buyer.
  update stock s set available = s.available - t.d, held = s.held + t.d,
    version = s.version + 1, updated_at = now()
  from unnest(sp, sw, st) as t(p, w, d)
  where t.d > 0 and s.product_id = t.p and s.warehouse_id = t.w;
  insert into stock_movements (id, product_id, warehouse_id, kind, quantity,
    d_available, d_held, d_sold, d_received, d_written_off, reason, reference)
  select t.m, t.p, t.w, 'held', t.q, -t.q, t.q, 0, 0, 0, 'reservation', t.r
  from unnest(hm, hp, hw, hq, hres) as t(m, p, w, q, r);
  -- Timestamps at millisecond precision, like the JavaScript Dates every other read makes of them.
  insert into reservations (id, bucket, user_id, status, expires_at, created_at, updated_at)
  select t.id, t.b, t.u, 'active', date_trunc('milliseconds', now() + make_interval(secs => t.ttl)),
    date_trunc('milliseconds', now()), date_trunc('milliseconds', now())
  from unnest(rid, rbucket, ruser, rttl) as t(id, b, u, ttl);
  insert into reservation_items (reservation_id, product_id, warehouse_id, quantity)
  select t.r, t.p, t.w, t.q from unnest(hres, hp, hw, hq) as t(r, p, w, q);
  insert into stock_holds (reservation_id, product_id, warehouse_id, quantity, status)
  select t.r, t.p, t.w, t.q, 'held' from unnest(hres, hp, hw, hq) as t(r, p, w, q);
  return results;
end
$fn$`);
    // One stock shard's step of a cross-shard reservation (the saga in reservation.service.ts): the
    // holds of the items on this shard, all or none, in one statement. Repeating it is safe: an item
    // this reservation already holds is returned as it is. Items [{p, w, q, m}] sorted by product id.
    // Answer: {state: 'held', holds: [{productId, warehouseId, quantity}]} | {state: 'short', short}
    // | {state: 'gone'} (the reservation's holds were already released or sold).
    this.addSql(`create function shop_hold(reservation text, items jsonb, lock_ms integer) returns jsonb
language plpgsql as $fn$
declare
  item jsonb;
  prior record;
  wh text;
  avail bigint;
  short jsonb := '[]'::jsonb;
  holds jsonb := '[]'::jsonb;
  products text[] := '{}';
  warehouses text[] := '{}';
  quantities bigint[] := '{}';
  movements text[] := '{}';
begin
  if lock_ms is not null then
    perform set_config('lock_timeout', lock_ms::text, true);
  end if;
  foreach item in array array(select jsonb_array_elements(items)) loop
    select warehouse_id, quantity, status into prior from stock_holds
    where reservation_id = reservation and product_id = item->>'p';
    if found then
      if prior.status <> 'held' then
        return jsonb_build_object('state', 'gone');
      end if;
      holds := holds || jsonb_build_array(jsonb_build_object(
        'productId', item->>'p', 'warehouseId', prior.warehouse_id, 'quantity', prior.quantity));
      continue;
    end if;
    wh := null; avail := null;
    select warehouse_id, available into wh, avail from stock
    where product_id = item->>'p' and (item->>'w' = '' or warehouse_id = item->>'w')
    order by available desc, warehouse_id limit 1
    for update;
    if wh is null or avail < (item->>'q')::bigint then
      short := short || jsonb_build_array(jsonb_build_object(
        'productId', item->>'p', 'warehouseId', item->>'w', 'requested', (item->>'q')::bigint,
        'available', coalesce(avail, 0)));
    else
      products := products || (item->>'p');
      warehouses := warehouses || wh;
      quantities := quantities || (item->>'q')::bigint;
      movements := movements || (item->>'m');
      holds := holds || jsonb_build_array(jsonb_build_object(
        'productId', item->>'p', 'warehouseId', wh, 'quantity', (item->>'q')::bigint));
    end if;
  end loop;
  if short <> '[]'::jsonb then
    return jsonb_build_object('state', 'short', 'short', short);
  end if;
  update stock s set available = s.available - t.q, held = s.held + t.q,
    version = s.version + 1, updated_at = now()
  from unnest(products, warehouses, quantities) as t(p, w, q)
  where s.product_id = t.p and s.warehouse_id = t.w;
  insert into stock_holds (reservation_id, product_id, warehouse_id, quantity, status)
  select reservation, t.p, t.w, t.q, 'held' from unnest(products, warehouses, quantities) as t(p, w, q);
  insert into stock_movements (id, product_id, warehouse_id, kind, quantity,
    d_available, d_held, d_sold, d_received, d_written_off, reason, reference)
  select t.m, t.p, t.w, 'held', t.q, -t.q, t.q, 0, 0, 0, 'reservation', reservation
  from unnest(movements, products, warehouses, quantities) as t(m, p, w, q);
  return jsonb_build_object('state', 'held', 'holds', holds);
end
$fn$`);

    // The last step of a cross-shard reservation, on the buyer's shard: a PENDING reservation becomes
    // ACTIVE (its TTL starts now), its items get the warehouses the holds were taken from, and the
    // answer is stored on the key; null when it is no longer pending (the sweeper failed it).
    // holds: [{productId, warehouseId}].
    this.addSql(`create function shop_reserve_activate(reservation text, ttl integer, holds jsonb,
  key_scope text, key_name text) returns jsonb
language plpgsql as $fn$
declare
  made record;
  iso constant text := 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"';
  answer jsonb;
begin
  update reservations set status = 'active',
    expires_at = date_trunc('milliseconds', now() + make_interval(secs => ttl)),
    version = version + 1, updated_at = date_trunc('milliseconds', now())
  where id = reservation and status = 'pending'
  returning user_id, expires_at, created_at, updated_at, version into made;
  if not found then
    return null;
  end if;
  update reservation_items ri set warehouse_id = t."warehouseId"
  from jsonb_to_recordset(holds) as t("productId" text, "warehouseId" text)
  where ri.reservation_id = reservation and ri.product_id = t."productId";
  answer := jsonb_build_object(
    'id', reservation, 'userId', made.user_id, 'status', 'active',
    'items', (select jsonb_agg(jsonb_build_object('productId', product_id, 'warehouseId', warehouse_id,
               'quantity', quantity) order by product_id)
              from reservation_items where reservation_id = reservation),
    'expiresAt', jsonb_build_object('$date', to_char(made.expires_at at time zone 'UTC', iso)),
    'createdAt', jsonb_build_object('$date', to_char(made.created_at at time zone 'UTC', iso)),
    'updatedAt', jsonb_build_object('$date', to_char(made.updated_at at time zone 'UTC', iso)),
    'version', made.version);
  update idempotency_records set response = answer where scope = key_scope and key = key_name;
  return answer;
end
$fn$`);
  }

  override down(): void {
    this.addSql("drop function if exists shop_reserve_activate(text, integer, jsonb, text, text)");
    this.addSql("drop function if exists shop_hold(text, jsonb, integer)");
    this.addSql("drop function if exists shop_reserve(jsonb, integer)");
  }
}
