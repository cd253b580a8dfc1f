import { connectPg } from "../../src/embedded/pg-client.js";
import { newId } from "../../src/shard/ids.js";
import { bucketOfUser, contiguousBucketMap } from "../../src/shard/router.js";

/** What the load generators pick from: each product with a buyer on the product's own shard. */
export interface Pair {
  buyer: string;
  product: string;
}

export const WAREHOUSE = "wh-1";

/** Ids whose bucket lands on each shard: `${prefix}-<n>`, `perShard` of them per shard. */
export function usersPerShard(prefix: string, shardCount: number, perShard: number): string[][] {
  const map = contiguousBucketMap(shardCount);
  const out: string[][] = Array.from({ length: shardCount }, () => []);
  for (let n = 0; out.some((u) => u.length < perShard); n++) {
    const id = `${prefix}-${n}`;
    const list = out[map.shardOf(bucketOfUser(id))] as string[];
    if (list.length < perShard) list.push(id);
  }
  return out;
}

/**
 * Bulk loader: `products` products spread evenly over the shards, each with one stock row of
 * `quantity` received units and the matching `received` ledger row (what applyMove writes for a
 * receipt), so the stock invariant holds from the start. One multi-row statement per table and batch.
 */
export async function seedProducts(urls: string[], products: number, quantity: number): Promise<Pair[]> {
  const sellers = usersPerShard("bench-seller", urls.length, 10);
  const buyers = usersPerShard("bench-buyer", urls.length, 64);
  const pairs: Pair[] = [];
  for (const [shard, url] of urls.entries()) {
    const client = await connectPg(url);
    try {
      const ids: string[] = [];
      const buckets: number[] = [];
      const sellerIds: string[] = [];
      const shardSellers = sellers[shard] as string[];
      const shardBuyers = buyers[shard] as string[];
      for (let i = shard; i < products; i += urls.length) {
        const seller = shardSellers[i % shardSellers.length] as string;
        const bucket = bucketOfUser(seller);
        const id = newId("prd", bucket);
        ids.push(id);
        buckets.push(bucket);
        sellerIds.push(seller);
        pairs.push({ buyer: shardBuyers[i % shardBuyers.length] as string, product: id });
      }
      for (let from = 0; from < ids.length; from += 2000) {
        const id = ids.slice(from, from + 2000);
        const bucket = buckets.slice(from, from + 2000);
        const seller = sellerIds.slice(from, from + 2000);
        const movement = bucket.map((b) => newId("mov", b));
        await client.query("begin");
        await client.query(
          `insert into products (id, bucket, seller_id, sku, name, price_minor, currency_code)
           select id, b, s, 'sku-' || id, 'bench product ' || id, 1000, 'EUR'
           from unnest($1::text[], $2::smallint[], $3::text[]) as t(id, b, s)`,
          [id, bucket, seller],
        );
        await client.query(
          `insert into stock (product_id, warehouse_id, available, received)
           select id, $2, $3, $3 from unnest($1::text[]) as t(id)`,
          [id, WAREHOUSE, quantity],
        );
        await client.query(
          `insert into stock_movements (id, product_id, warehouse_id, kind, quantity,
             d_available, d_held, d_sold, d_received, d_written_off, reason, reference)
           select m, id, $3, 'received', $4, $4, 0, 0, $4, 0, 'bench seed', ''
           from unnest($1::text[], $2::text[]) as t(m, id)`,
          [movement, id, WAREHOUSE, quantity],
        );
        await client.query("commit");
      }
      await client.query("analyze");
    } finally {
      await client.end();
    }
  }
  return pairs;
}
