/**
 * `node --import tsx bench/sweeper.ts [--live 10000,100000] [--passes 5] [--owed 1000]` (npm run bench:sweeper)
 *
 * What one sweeper pass costs when many reservations are live, side by side in one run:
 * - the product's pass (src/reservation/sweeper.ts: expiry, stale intents, the settlements owed,
 *   one bounded page of the orphan scrub per shard, order repair not included);
 * - the orphan walk it replaced (bench/references/full-orphan-walk.ts: every live hold older than
 *   the intent bound, every pass).
 * For each count of live reservations (ACTIVE, one hold each, taken 2 minutes ago, over 3 shards),
 * `passes` passes of each; reported per pass: wall time p50/max, Node CPU and Postgres CPU (every
 * postgres process, from /proc). Then `owed` reservations are made RELEASED with their settlement
 * rows (as a release that died before giving the stock back leaves them) and one product pass
 * settles them all: its time per settlement. Loopback Postgres only; its own databases, dropped at
 * the end. JSON under bench/results/.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { pino } from "pino";
import { connectPg } from "../src/embedded/pg-client.js";
import { createSweeper } from "../src/reservation/sweeper.js";
import { newId, parseId } from "../src/shard/ids.js";
import { bucketOfUser } from "../src/shard/router.js";
import type { ShardSet } from "../src/shard/shards.js";
import { migrateShards } from "../test/harness/global-setup.js";
import {
  createShardDatabases,
  dropShardDatabases,
  LOCAL_POSTGRES,
  openTestShards,
} from "../test/harness/shard-databases.js";
import { postgresCpu, postgresCpuSince } from "./lib/processes.js";
import { quantile } from "./lib/quantile.js";
import { machine, markdownTable } from "./lib/report.js";
import { type Pair, seedProducts } from "./lib/seed.js";
import { fullOrphanWalk } from "./references/full-orphan-walk.js";

const { values: args } = parseArgs({
  options: {
    live: { type: "string", default: "10000,100000" },
    passes: { type: "string", default: "5" },
    owed: { type: "string", default: "1000" },
  },
});
const sizes = String(args.live).split(",").map(Number);
const passes = Number(args.passes);
const owed = Number(args.owed);
if (sizes.some((n) => !(n > 0)) || !(passes > 0) || !(owed >= 0))
  throw new Error("--live takes positive counts, --passes a positive number, --owed a count");

const INTENT_BOUND_S = 60;
const BATCH = 100; // the sweeper's default batch

interface PassStats {
  variant: string;
  live: number;
  passes: number;
  p50Ms: number;
  maxMs: number;
  nodeCpuMsPerPass: number;
  pgCpuMsPerPass: number;
}

const urls = await createShardDatabases(LOCAL_POSTGRES, 3, `bench_sweep_${process.pid}`);
const results: PassStats[] = [];
let settlement: { owed: number; ms: number; msPerSettlement: number; released: number } | undefined;
try {
  await migrateShards(urls);
  const pairs = await seedProducts(urls, 3000, 1_000_000);
  const shards = await openTestShards(urls, 4);
  try {
    let seeded = 0;
    for (const live of sizes) {
      await seedLive(shards, pairs, live - seeded);
      seeded = live;
      const sweeper = createSweeper(
        { shards, logger: pino({ enabled: false }) },
        { intervalMs: 3_600_000, intentTimeoutSeconds: INTENT_BOUND_S, batchSize: BATCH },
      );
      results.push(await measure("product pass", live, () => sweeper.runOnce()));
      results.push(
        await measure("full orphan walk (before 0006)", live, async () => {
          await fullOrphanWalk(shards, INTENT_BOUND_S, BATCH);
        }),
      );
      if (sweeper.counts.errors > 0 || sweeper.counts.orphanHoldsReleased > 0)
        throw new Error(`the sweeper should find nothing to do: ${JSON.stringify(sweeper.counts)}`);
    }
    if (owed > 0) settlement = await measureSettlements(shards, owed);
  } finally {
    await shards.close();
  }
} finally {
  await dropShardDatabases(urls);
}

const rows = results.map((r) => {
  // Each product row is followed by the walk it is compared with.
  const walk = r.variant === "product pass" ? results[results.indexOf(r) + 1] : undefined;
  return [
    r.variant,
    String(r.live),
    String(r.passes),
    r.p50Ms.toFixed(1),
    r.maxMs.toFixed(1),
    r.nodeCpuMsPerPass.toFixed(1),
    r.pgCpuMsPerPass.toFixed(1),
    walk ? `${(walk.p50Ms / r.p50Ms).toFixed(0)}x` : "-",
  ];
});
process.stdout.write(
  `${markdownTable(
    [
      "variant",
      "live reservations",
      "passes",
      "pass p50 ms",
      "pass max ms",
      "Node CPU ms/pass",
      "pg CPU ms/pass",
      "walk p50 / pass p50",
    ],
    rows,
  )}\n`,
);
if (settlement)
  process.stdout.write(
    `\n${settlement.owed} owed settlements (RELEASED, holds live) behind ${sizes.at(-1)} live reservations: one pass settled them in ${settlement.ms.toFixed(0)} ms (${settlement.msPerSettlement.toFixed(2)} ms each), ${settlement.released} holds released.\n`,
  );
mkdirSync("bench/results", { recursive: true });
const file = `bench/results/sweeper-${new Date().toISOString().replace(/[:.]/g, "-")}.json`;
writeFileSync(file, JSON.stringify({ machine: machine(), sizes, passes, results, settlement }, null, 2));
process.stdout.write(`bench:sweeper: wrote ${file}\n`);

/** `count` more live reservations, spread over the shards, each holding 1 unit of one product. */
async function seedLive(shards: ShardSet, pairs: Pair[], count: number): Promise<void> {
  const byShard = new Map<
    string,
    { ids: string[]; buckets: number[]; users: string[]; products: string[] }
  >();
  const at = Date.now() - 120_000;
  for (let i = 0; i < count; i++) {
    const pair = pairs[i % pairs.length];
    if (!pair) throw new Error("no products");
    const bucket = bucketOfUser(pair.buyer);
    const url = urls[shards.forBucket(bucket).index] as string;
    const list = byShard.get(url) ?? { ids: [], buckets: [], users: [], products: [] };
    list.ids.push(newId("res", bucket, at + (i % 1000)));
    list.buckets.push(bucket);
    list.users.push(pair.buyer);
    list.products.push(pair.product);
    byShard.set(url, list);
  }
  for (const [url, l] of byShard) {
    const client = await connectPg(url);
    try {
      await client.query("begin");
      await client.query(
        `insert into reservations (id, bucket, user_id, status, expires_at, created_at)
         select id, b, u, 'active', now() + interval '10 minutes', now() - interval '2 minutes'
         from unnest($1::text[], $2::smallint[], $3::text[]) as t(id, b, u)`,
        [l.ids, l.buckets, l.users],
      );
      await client.query(
        `insert into reservation_items (reservation_id, product_id, warehouse_id, quantity)
         select id, p, 'wh-1', 1 from unnest($1::text[], $2::text[]) as t(id, p)`,
        [l.ids, l.products],
      );
      await client.query(
        `insert into stock_holds (reservation_id, product_id, warehouse_id, quantity, status, created_at)
         select id, p, 'wh-1', 1, 'held', now() - interval '2 minutes' from unnest($1::text[], $2::text[]) as t(id, p)`,
        [l.ids, l.products],
      );
      await client.query(
        `update stock s set available = s.available - t.n, held = s.held + t.n
         from (select p, count(*) as n from unnest($1::text[]) as u(p) group by p) t
         where s.product_id = t.p`,
        [l.products],
      );
      await client.query("commit");
      await client.query("vacuum analyze");
    } finally {
      await client.end();
    }
  }
}

async function measure(variant: string, live: number, pass: () => Promise<void>): Promise<PassStats> {
  await pass(); // warm-up
  const times: number[] = [];
  const cpu0 = process.cpuUsage();
  const pg0 = postgresCpu();
  for (let i = 0; i < passes; i++) {
    const t0 = performance.now();
    await pass();
    times.push(performance.now() - t0);
  }
  const cpu = process.cpuUsage(cpu0);
  const pgMs = postgresCpuSince(pg0);
  times.sort((a, b) => a - b);
  const stats = {
    variant,
    live,
    passes,
    p50Ms: quantile(times, 0.5),
    maxMs: times.at(-1) ?? Number.NaN,
    nodeCpuMsPerPass: (cpu.user + cpu.system) / 1000 / passes,
    pgCpuMsPerPass: pgMs / passes,
  };
  process.stdout.write(`bench:sweeper: ${variant}, ${live} live: pass p50 ${stats.p50Ms.toFixed(1)} ms\n`);
  return stats;
}

/** Makes `count` live reservations RELEASED with their settlement rows, then times one pass. */
async function measureSettlements(shards: ShardSet, count: number) {
  const ids: string[] = [];
  for (const shard of shards.shards) {
    const rows = await shard
      .fork()
      .execute<{ id: string }[]>(
        "select id from reservations where status = 'active' order by id desc limit ?",
        [Math.ceil(count / shards.shards.length)],
      );
    ids.push(...rows.map((r) => String(r.id)));
  }
  for (const id of ids.slice(0, count)) {
    const buyer = shards.forBucket(parseId(id, "res", "reservation_id").bucket);
    await buyer.fork().execute(
      `with r as (update reservations set status = 'released' where id = ? returning id)
       insert into hold_settlements (reservation_id) select id from r`,
      [id],
    );
  }
  const sweeper = createSweeper(
    { shards, logger: pino({ enabled: false }) },
    { intervalMs: 3_600_000, intentTimeoutSeconds: INTENT_BOUND_S, batchSize: BATCH },
  );
  const t0 = performance.now();
  await sweeper.runOnce();
  const ms = performance.now() - t0;
  const left = await Promise.all(
    shards.shards.map((s) =>
      s.fork().execute<{ n: number }[]>("select count(*)::int as n from hold_settlements"),
    ),
  );
  const remaining = left.reduce((a, r) => a + Number(r[0]?.n ?? 0), 0);
  if (remaining > 0 || sweeper.counts.errors > 0)
    throw new Error(`one pass left ${remaining} settlements, ${sweeper.counts.errors} errors`);
  const n = Math.min(count, ids.length);
  return { owed: n, ms, msPerSettlement: ms / n, released: sweeper.counts.orphanHoldsReleased };
}
