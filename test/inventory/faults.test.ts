import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import type { App } from "../../src/app.js";
import { checkShardStock } from "../../src/inventory/inventory.queries.js";
import { newId } from "../../src/shard/ids.js";
import { startTestApp, unique } from "../harness/app.js";
import { client, transportFor } from "../harness/clients.js";
import { expectError } from "../harness/errors.js";
import { migrateShards } from "../harness/global-setup.js";
import { createShardDatabases, dropShardDatabases } from "../harness/shard-databases.js";
import { seedProduct } from "./seed.js";

// Own databases: these tests break things on purpose.
const prefix = `faults_${process.pid}`;
let urls: string[] = [];
let app: App & { port: number };
const inv = () => client(InventoryService, transportFor("connect-json-http1", app.port));

beforeAll(async () => {
  urls = await createShardDatabases(undefined, 2, prefix);
  await migrateShards(urls);
  // Shard 1 points at a port where nothing listens: a shard that is down.
  app = await startTestApp({
    shardUrls: [urls[0] as string, "postgres://postgres:secret@127.0.0.1:1/down_db"],
  });
});
afterAll(async () => {
  await app?.shutdown();
  await dropShardDatabases(undefined, 2, prefix);
});

/** A user id whose bucket lands on the given shard. */
function userOnShard(shard: number): string {
  for (let i = 0; ; i++) {
    const id = unique(`u${i}`);
    if (app.shards.forUser(id).index === shard) return id;
  }
}

describe("faults", () => {
  it("answers UNAVAILABLE without host names or SQL when a shard is down, and serves the others", async () => {
    const down = newId("prd", 1023); // the last bucket lives on the last shard, which is down
    const err = await expectError(inv().getProduct({ productId: down }), Code.Unavailable);
    expect(err.rawMessage).not.toMatch(/127\.0\.0\.1|down_db|secret|select|ECONNREFUSED/i);
    const up = await seedProduct(inv(), userOnShard(0));
    expect((await inv().getProduct({ productId: up.id })).product?.id).toBe(up.id);
    await expectError(
      inv().createProduct({
        sellerId: userOnShard(1),
        sku: "s",
        name: "n",
        price: { amountMinor: 1n, currencyCode: "EUR" },
        idempotencyKey: "k",
      }),
      Code.Unavailable,
    );
  });

  it("reports a ledger that disagrees with the stock columns", async () => {
    const p = await seedProduct(inv(), userOnShard(0), { stock: { main: 4 } });
    const shard0 = app.shards.shards[0];
    if (!shard0) throw new Error("no shard 0");
    await shard0.fork().execute("delete from stock_movements where product_id = ?", [p.id]);
    const { violations } = await checkShardStock(shard0.fork(), 0);
    expect(violations.filter((v) => v.productId === p.id).map((v) => v.rule)).toEqual(["ledger", "ledger"]);
    // The RPC must check every shard: with shard 1 down it answers UNAVAILABLE rather than a partial "ok".
    await expectError(inv().checkStockInvariant({}), Code.Unavailable);
  });
});
