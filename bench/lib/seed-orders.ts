import { connectPg, type PgClient } from "../../src/embedded/pg-client.js";
import { newId } from "../../src/shard/ids.js";
import { bucketOfUser } from "../../src/shard/router.js";
import { type BulkSchema, dropForBulkLoad, restoreAfterBulkLoad } from "./bulk-schema.js";

/**
 * Bulk loader of orders for ListOrders at scale (issue 5, scenario 5): `orders` top-level orders of
 * `users` buyers on ONE shard database, with their lines, payments, children, history rows and event
 * streams, consistent the way the product's own check (src/order/order-check.ts) checks them.
 *
 * The shape: buyers' order counts follow a Zipf law (1/(rank+20): a few buyers with thousands of
 * orders, a median buyer with a handful); created_at over two years, denser towards now; statuses by
 * age (older orders delivered or cancelled, the last weeks' still moving); product prices
 * log-normal, so totals have a long tail; one or more lines from one seller, or about 3% multi-seller
 * parents with one child per seller; payments, refunds and archiving as the API would leave them;
 * one history row per version, numbered in each buyer's stream.
 *
 * Fast and honest: everything is generated inside Postgres from a few thousand JS-made rows (buyers
 * with the bucket bucketOfUser gives them, products with ids from newId) by INSERT ... SELECT, while the
 * tables' keys, unique and foreign keys and indexes are dropped; then they are rebuilt from their
 * saved definitions (which validates every key) and the catalog is compared with what it was. CHECKs
 * and NOT NULLs stay on the whole time. Order ids are made in SQL in the exact format of newId
 * (src/shard/ids.ts), with the buyer's bucket and created_at as their time; the caller checks a sample
 * with parseId.
 */

export interface OrderSeedOptions {
  orders: number;
  users: number;
  /** Products, a multiple of 800 (800 sellers, 25 products each at 20,000); default 20,000. */
  products?: number;
  /** setseed() value in (-1, 1): the same options give the same data. */
  seed?: number;
}

export interface SeededBuyer {
  userId: string;
  email: string;
  orders: number;
}

export interface OrderSeed {
  seconds: number;
  /** Seconds per phase, in order. */
  phases: Record<string, number>;
  rows: Record<"orders" | "topLevel" | "children" | "items" | "payments" | "events" | "users", number>;
  /** Top-level orders per status. */
  statuses: Record<string, number>;
  archived: number;
  /** Orders per buyer: min, median, p99, max. */
  perBuyer: { min: number; median: number; p99: number; max: number };
  /** Total in minor units (top-level): p50, p99, max. */
  totals: { p50: number; p99: number; max: number };
  heavy: SeededBuyer;
  /** The buyer whose order count is closest to the mean. */
  typical: SeededBuyer;
  /** created_at of the oldest and newest top-level order (ISO). */
  createdRange: [string, string];
}

const TABLES = ["orders", "order_items", "order_payments", "order_events", "order_streams"];
const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/** Product "classes" (p mod 20): 0-16 price in EUR, 17-18 USD, 19 GBP; a seller's products share one. */
const PRODUCT_CLASSES = 20;
const SELLERS = 800;
const ZIPF_OFFSET = 20;
const DAY_S = 86_400;

export async function seedOrders(
  url: string,
  opts: OrderSeedOptions,
  say: (msg: string) => void = () => undefined,
): Promise<OrderSeed> {
  const products = opts.products ?? 20_000;
  // Same-seller lines step 40 product groups (800 products); three of them must not wrap around.
  if (products % SELLERS !== 0 || products < 3 * SELLERS)
    throw new Error(`products must be a multiple of ${SELLERS}, at least ${3 * SELLERS}`);
  const client = await connectPg(url, 10_000);
  const phases: Record<string, number> = {};
  const t0 = performance.now();
  let mark = t0;
  const phase = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const out = await fn();
    const now = performance.now();
    phases[name] = +((now - mark) / 1000).toFixed(2);
    mark = now;
    say(`seed orders: ${name} ${phases[name]} s`);
    return out;
  };
  try {
    await client.query("set synchronous_commit = off");
    await client.query("set maintenance_work_mem = '512MB'");
    await client.query("set work_mem = '256MB'");
    await client.query("select setseed($1)", [opts.seed ?? 0.42]);
    let schema: BulkSchema | undefined;
    await phase("stage buyers and products", async () => {
      await stageBuyers(client, opts.orders, opts.users);
      await stageProducts(client, products);
    });
    await phase("plan orders", () => planOrders(client, products));
    await phase("drop keys and indexes", async () => {
      schema = await dropForBulkLoad(client, TABLES);
    });
    await phase("insert orders and items", () => insertOrders(client));
    await phase("insert payments, history, streams", () => insertHistory(client));
    await phase("rebuild keys and indexes", () => restoreAfterBulkLoad(client, schema as BulkSchema));
    await phase("vacuum analyze", () => client.query(`vacuum analyze ${TABLES.join(", ")}`));
    // The load's dirty pages written out now, not by the checkpointer during the measurements.
    await phase("checkpoint", () => client.query("checkpoint"));
    const summary = await phase("summary", () => summarise(client));
    return { seconds: +((performance.now() - t0) / 1000).toFixed(1), phases, ...summary };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Buyers with Zipf order counts summing exactly to `orders` (largest remainders), bucket from the product's hash. */
async function stageBuyers(client: PgClient, orders: number, users: number): Promise<void> {
  const weights = Array.from({ length: users }, (_, u) => 1 / (u + ZIPF_OFFSET));
  const sum = weights.reduce((a, b) => a + b, 0);
  const exact = weights.map((w) => (w / sum) * orders);
  const counts = exact.map(Math.floor);
  let left = orders - counts.reduce((a, b) => a + b, 0);
  const byRemainder = exact.map((x, u) => [x - Math.floor(x), u] as const).sort((a, b) => b[0] - a[0]);
  for (const [, u] of byRemainder) {
    if (left-- <= 0) break;
    counts[u] = (counts[u] as number) + 1;
  }
  const first = [
    "anna",
    "ben",
    "chloe",
    "david",
    "emma",
    "farid",
    "greta",
    "hugo",
    "ines",
    "jonas",
    "kai",
    "lea",
  ];
  const last = ["schmidt", "martin", "rossi", "garcia", "novak", "jensen", "silva", "kowalski", "dubois"];
  const domains = ["example.com", "example.net", "example.org", "mail.example", "post.example"];
  const ids: string[] = [];
  const buckets: number[] = [];
  const emails: string[] = [];
  const alt: string[] = [];
  for (let u = 0; u < users; u++) {
    const id = `user-${u}`;
    const name = `${first[u % first.length]}.${last[Math.floor(u / first.length) % last.length]}${u}`;
    ids.push(id);
    buckets.push(bucketOfUser(id));
    emails.push(`${name}@${domains[u % domains.length]}`);
    alt.push(`${name}@work.example`);
  }
  await client.query(
    `create temp table s_buyers as
     select u::int - 1 as u, id as user_id, b as bucket, email, alt, cnt,
       -- the buyer's product class picks the currency: 17 of 20 EUR, 2 USD, 1 GBP
       case when (u - 1) % 20 < 17 then 'EUR' when (u - 1) % 20 < 19 then 'USD' else 'GBP' end as currency
     from unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::int[]) with ordinality as t(id, b, email, alt, cnt, u)`,
    [ids, buckets, emails, alt, counts],
  );
}

/** Products with ids from the product's newId (the seller's bucket), log-normal prices. */
async function stageProducts(client: PgClient, products: number): Promise<void> {
  const ids: string[] = [];
  const t = Date.parse("2023-01-01T00:00:00Z");
  for (let p = 0; p < products; p++) ids.push(newId("prd", bucketOfUser(`seller-${p % SELLERS}`), t + p));
  await client.query(
    `create temp table s_products as
     select p::int - 1 as p, id as product_id, 'seller-' || ((p - 1) % ${SELLERS}) as seller_id,
       'SKU-' || lpad((p - 1)::text, 6, '0') as sku,
       (array['Classic', 'Compact', 'Deluxe', 'Eco', 'Pro', 'Mini'])[1 + (p % 6)::int] || ' ' ||
       (array['kettle', 'backpack', 'lamp', 'headphones', 'mug', 'jacket', 'charger', 'shelf'])[1 + (p % 8)::int]
         || ' ' || p as name,
       -- log-normal: median 24.90, a long tail into the thousands
       greatest(50, round(exp(ln(2490) + 1.1 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()))))::bigint
         as price
     from unnest($1::text[]) with ordinality as t(id, p)`,
    [ids],
  );
  await client.query("alter table s_products add primary key (p)");
}

/** `expr` (a bigint) as `chars` Crockford base32 characters, most significant first. */
function b32(expr: string, chars: number): string {
  return Array.from(
    { length: chars },
    (_, i) => `substr('${ALPHABET}', (((${expr}) >> ${5 * (chars - 1 - i)}) & 31)::int + 1, 1)`,
  ).join(" || ");
}

/**
 * The SQL of newId(kind, bucket, ms): 2 zero bits + 48 bits of ms (10 characters), then the 16-bit
 * bucket and 4 random bits (4 characters), then 60 random bits (2 x 6 characters): 26 in all.
 * `r` names three random columns: <r>0 in 0..15, <r>1 and <r>2 in 0..2^30-1.
 */
function idSql(kind: string, ms: string, bucket: string, r: string): string {
  return `'${kind}_' || ${b32(ms, 10)} || ${b32(`(${bucket}::bigint << 4) | ${r}0`, 4)} || ${b32(`${r}1`, 6)} || ${b32(`${r}2`, 6)}`;
}
const RANDOM_ID = (r: string) =>
  `floor(random() * 16)::bigint as ${r}0, floor(random() * 1073741824)::bigint as ${r}1, floor(random() * 1073741824)::bigint as ${r}2`;

/**
 * s_top: one row per top-level order with everything that decides its rows; s_lines: its lines;
 * s_all: every order row to insert (top-level and children) with its history. Each derived column
 * is computed once per row: the `offset 0` fences keep Postgres from inlining a column's expression
 * into every place that uses it.
 */
async function planOrders(client: PgClient, products: number): Promise<void> {
  const groups = products / PRODUCT_CLASSES;
  const { rows } = await client.query<{ us: string }>(
    "select (extract(epoch from now()) * 1000000)::bigint::text as us",
  );
  const nowUs = rows[0]?.us as string;
  await client.query(`create temp table s_top as
    select *, ${idSql("ord", "ms", "bucket", "o")} as id, ${idSql("res", "ms - 90000", "bucket", "v")} as reservation_id,
      -- money: confirmed and later are paid; a cancel after confirmation is refunded in full; 30% of
      -- pending orders have an authorised payment; 4% of delivered ones a refunded first line
      case when last_live <> 'pending' then 'captured' when status = 'pending' and r_pay < 0.3 then 'authorized'
        else 'none' end as pay,
      case when status = 'cancelled' and last_live <> 'pending' then 'full'
        when status = 'delivered' and r_pay < 0.04 then 'partial' else 'none' end as refund,
      status in ('delivered', 'cancelled') and r_archive < 0.12 as archived
    from (select *, timestamptz 'epoch' + us * interval '1 microsecond' as created_at, us / 1000 as ms,
        case when status = 'cancelled'
          then (array['pending', 'pending', 'confirmed', 'processing'])[1 + floor(r_extra * 4)::int]
          else status end as last_live
      from (select *, ${nowUs} - floor(age * ${DAY_S * 1e6})::bigint as us,
          -- statuses by age: older orders are delivered or cancelled, the last weeks' still move
          case when age > 21 then (case when r_status < 0.92 then 'delivered' else 'cancelled' end)
            when age > 7 then (case when r_status < 0.80 then 'delivered' when r_status < 0.88 then 'shipped'
              when r_status < 0.96 then 'cancelled' when r_status < 0.98 then 'processing'
              when r_status < 0.99 then 'confirmed' else 'pending' end)
            else (case when r_status < 0.12 then 'pending' when r_status < 0.27 then 'confirmed'
              when r_status < 0.47 then 'processing' when r_status < 0.77 then 'shipped'
              when r_status < 0.90 then 'delivered' else 'cancelled' end) end as status
        from (select *, 730 * power(r_age, 1.6) as age,
            case when r_shape < 0.6 then 1 when r_shape < 0.88 then 2 else 3 end as nlines,
            r_shape >= 0.6 and r_multi < 0.08 as multi,
            case when r_email < 0.05 then alt else email end as customer_email,
            case when currency = 'EUR' then floor(r_class * 17)::int
              when currency = 'USD' then 17 + floor(r_class * 2)::int else 19 end as cls
          from (select row_number() over () as n, b.user_id, b.bucket, b.email, b.alt, b.currency,
              random() as r_age, random() as r_status, random() as r_pay, random() as r_extra,
              random() as r_archive, random() as r_shape, random() as r_multi, random() as r_email,
              random() as r_class, floor(random() * ${groups})::int as grp, ${RANDOM_ID("o")}, ${RANDOM_ID("v")}
            from s_buyers b, generate_series(1, b.cnt) offset 0) d1 offset 0) d2 offset 0) d3 offset 0) d4`);
  await client.query("alter table s_top add primary key (n)");
  // A single-seller order's lines come from one seller (same p mod 800); a multi-seller one's from
  // consecutive sellers of the same class (so one currency), one child order each.
  await client.query(`create temp table s_lines as
    select n, k, product_id, seller_id, sku, name, price, quantity,
      case when refund = 'full' or (refund = 'partial' and k = 1) then quantity else 0 end as refunded_quantity,
      case when multi then ${idSql("ord", "ms", "bucket", "c")} end as child_id
    from (select *, case when q < 0.8 then 1 when q < 0.94 then 2 else 3 + floor((q - 0.94) * 50)::int end as quantity
      from (select t.n, k, t.ms, t.bucket, t.refund, t.multi, p.product_id, p.seller_id, p.sku, p.name, p.price,
          random() as q, ${RANDOM_ID("c")}
        from s_top t, generate_series(1, t.nlines) k, s_products p
        where p.p = ${PRODUCT_CLASSES} * ((t.grp + case when t.multi then k - 1 else 40 * (k - 1) end) % ${groups}) + t.cls
        offset 0) l1 offset 0) l2`);
  await client.query("create index on s_lines (n)");
  await planAll(client);
}

/**
 * The history of an order as two arrays, the kind and the status after each change: created as
 * pending, paid (top-level), each step of the status machine, cancelled, refunded and archived.
 */
function historySql(child: boolean): { kinds: string; tos: string } {
  const steps =
    "array_position(array['pending', 'confirmed', 'processing', 'shipped', 'delivered'], t.last_live) - 1";
  const opt = (cond: string, kind: string, to: string) => ({
    kinds: `case when ${cond} then array['${kind}'] else '{}'::text[] end`,
    tos: `case when ${cond} then array[${to}] else '{}'::text[] end`,
  });
  const parts = [
    { kinds: "array['created']", tos: "array['pending']" },
    ...(child ? [] : [opt("t.pay <> 'none'", "payment", "'pending'")]),
    {
      kinds: `array_fill('status'::text, array[${steps}])`,
      tos: `(array['confirmed', 'processing', 'shipped', 'delivered'])[1:${steps}]`,
    },
    opt("t.status = 'cancelled'", "status", "'cancelled'"),
    ...(child
      ? []
      : [opt("t.refund <> 'none'", "refund", "t.status"), opt("t.archived", "archived", "t.status")]),
  ];
  return { kinds: parts.map((p) => p.kinds).join(" || "), tos: parts.map((p) => p.tos).join(" || ") };
}

/** s_all: every orders row (top-level, then children) with its total and history. */
async function planAll(client: PgClient): Promise<void> {
  const top = historySql(false);
  const child = historySql(true);
  await client.query(`create temp table s_all as
    select t.n, 0 as k, t.id, t.bucket, t.user_id, t.customer_email, t.status, null::text as parent_order_id,
      case when t.multi then '' else min(l.seller_id) end as seller_id, t.reservation_id, t.currency,
      sum(l.price * l.quantity) as total_minor,
      case when t.pay = 'captured' then sum(l.price * l.quantity) else 0 end as paid_minor,
      sum(l.price * l.refunded_quantity) as refunded_minor,
      case when t.multi then 'none' when t.status = 'cancelled' then 'returned' else 'sold' end as stock_status,
      t.archived, t.created_at, t.ms, t.pay, t.multi, ${top.kinds} as kinds, ${top.tos} as tos
    from s_top t join s_lines l on l.n = t.n
    group by t.n`);
  await client.query(`insert into s_all
    select t.n, l.k, l.child_id, t.bucket, t.user_id, t.customer_email, t.status, t.id, l.seller_id,
      t.reservation_id, t.currency, l.price * l.quantity, 0, 0,
      case when t.status = 'cancelled' then 'returned' else 'sold' end, false, t.created_at, t.ms, 'none', true,
      ${child.kinds}, ${child.tos}
    from s_top t join s_lines l on l.n = t.n where t.multi`);
}

/** The time between an order's changes: spread after its creation, the last one no later than now. */
const gap = (o: string) =>
  `least(interval '18 hours', (now() - ${o}.created_at) / (cardinality(${o}.kinds) + 1))`;

async function insertOrders(client: PgClient): Promise<void> {
  // order_number: SO-<UTC date>-<bucket, 2 chars><6 chars from a bijection of the row's number>.
  await client.query(`insert into orders (id, bucket, order_number, user_id, customer_email, status,
      parent_order_id, seller_id, reservation_id, currency_code, total_minor, paid_minor, refunded_minor,
      stock_status, archived, version, created_at, updated_at)
    select id, bucket,
      'SO-' || to_char(created_at at time zone 'UTC', 'YYYYMMDD') || '-' || ${b32("bucket::bigint", 2)}
        || ${b32("((n * 4 + k) * 387420489) & 1073741823", 6)},
      user_id, customer_email, status, parent_order_id, seller_id, reservation_id, currency, total_minor,
      paid_minor, refunded_minor, stock_status, archived, cardinality(kinds), created_at,
      created_at + (cardinality(kinds) - 1) * ${gap("a")}
    from s_all a order by created_at, n, k`);
  await client.query(`insert into order_items (order_id, product_id, seller_id, warehouse_id, sku, name,
      quantity, unit_price_minor, line_total_minor, refunded_quantity)
    select coalesce(l.child_id, t.id), l.product_id, l.seller_id,
      case when l.k = 1 then 'wh-1' else 'wh-2' end, l.sku, l.name, l.quantity, l.price, l.price * l.quantity,
      l.refunded_quantity
    from s_lines l join s_top t on t.n = l.n order by t.created_at, l.n, l.k`);
}

async function insertHistory(client: PgClient): Promise<void> {
  await client.query(`insert into order_payments (id, order_id, amount_minor, currency_code, provider_reference,
      status, created_at, updated_at)
    select ${idSql("pay", "o.ms + 60000", "o.bucket", "o.r")}, o.id, o.total_minor, o.currency, 'psp-' || o.n,
      o.pay, o.created_at + o.gap, o.created_at + o.gap
    from (select a.*, ${gap("a")} as gap, ${RANDOM_ID("r")} from s_all a where a.pay <> 'none' offset 0) o`);
  // A buyer's events are numbered in the order of its orders' creation, each order's in version order.
  await client.query(`insert into order_events (user_id, seq, order_id, version, kind, from_status, to_status,
      reason, actor, created_at)
    select o.user_id, o.before + e.v, o.id, e.v, e.kind, coalesce(o.tos[e.v - 1], ''), e.to_status,
      case when e.kind = 'payment' then 'payment psp-' || o.n || ' ' || o.pay
        when e.to_status = 'cancelled' and e.kind = 'status' then 'customer request' else '' end,
      case when e.v = 1 or e.kind = 'archived' or (e.kind = 'status' and e.to_status = 'cancelled') then o.user_id
        when e.kind = 'payment' then 'payments' when o.parent and e.kind = 'status' then 'system'
        else 'operator' end,
      o.created_at + (e.v - 1) * o.gap
    from (select a.user_id, a.id, a.n, a.pay, a.kinds, a.tos, a.created_at, ${gap("a")} as gap,
        a.stock_status = 'none' as parent,
        coalesce(sum(cardinality(a.kinds)) over (partition by a.user_id order by a.created_at, a.id
          rows between unbounded preceding and 1 preceding), 0) as before
      from s_all a offset 0) o,
      unnest(o.kinds, o.tos) with ordinality as e(kind, to_status, v)`);
  await client.query(`insert into order_streams (user_id, last_seq)
    select user_id, sum(cardinality(kinds)) from s_all group by user_id`);
}

async function summarise(client: PgClient): Promise<Omit<OrderSeed, "seconds" | "phases">> {
  const one = async (sql: string) => (await client.query<Record<string, string>>(sql)).rows[0] ?? {};
  const count = async (table: string, where = "true") =>
    Number((await one(`select count(*) as c from ${table} where ${where}`)).c);
  const rows = {
    orders: await count("orders"),
    topLevel: await count("orders", "parent_order_id is null"),
    children: await count("orders", "parent_order_id is not null"),
    items: await count("order_items"),
    payments: await count("order_payments"),
    events: await count("order_events"),
    users: await count("order_streams"),
  };
  const statuses = Object.fromEntries(
    (
      await client.query<{ status: string; c: string }>(
        "select status, count(*) as c from orders where parent_order_id is null group by 1 order by 2 desc",
      )
    ).rows.map((r) => [r.status, Number(r.c)]),
  );
  const per = await one(`select min(c) as min, percentile_disc(0.5) within group (order by c) as median,
      percentile_disc(0.99) within group (order by c) as p99, max(c) as max, avg(c) as avg
    from (select count(*) as c from orders where parent_order_id is null group by user_id) s`);
  const totals = await one(`select percentile_disc(0.5) within group (order by total_minor) as p50,
      percentile_disc(0.99) within group (order by total_minor) as p99, max(total_minor) as max,
      min(created_at) as oldest, max(created_at) as newest,
      count(*) filter (where archived) as archived
    from orders where parent_order_id is null`);
  const buyer = async (order: string): Promise<SeededBuyer> => {
    const r = await one(`select user_id, min(customer_email) as email, count(*) as c from orders
      where parent_order_id is null group by user_id order by ${order} limit 1`);
    return { userId: String(r.user_id), email: String(r.email), orders: Number(r.c) };
  };
  return {
    rows,
    statuses,
    archived: Number(totals.archived),
    perBuyer: {
      min: Number(per.min),
      median: Number(per.median),
      p99: Number(per.p99),
      max: Number(per.max),
    },
    totals: { p50: Number(totals.p50), p99: Number(totals.p99), max: Number(totals.max) },
    heavy: await buyer("count(*) desc, user_id"),
    typical: await buyer(`abs(count(*) - ${Number(per.avg)}), user_id`),
    createdRange: [
      new Date(totals.oldest as string).toISOString(),
      new Date(totals.newest as string).toISOString(),
    ],
  };
}
