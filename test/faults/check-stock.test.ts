import { spawn } from "node:child_process";
import { once } from "node:events";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import { OrderService } from "../../gen/shop/order/v1/order_pb.js";
import type { App } from "../../src/app.js";
import { startTestApp } from "../harness/app.js";
import { client, transportFor } from "../harness/clients.js";
import { migrateShards } from "../harness/global-setup.js";
import { createShardDatabases, dropShardDatabases } from "../harness/shard-databases.js";
import { seedProduct } from "../inventory/seed.js";
import { userOnShard } from "../reservation/seed.js";

// Own databases: this file corrupts the ledger on purpose.
const prefix = `checkstock_${process.pid}`;
let urls: string[] = [];
let app: App & { port: number };
const inv = () => client(InventoryService, transportFor("connect-json-http1", app.port));

beforeAll(async () => {
  urls = await createShardDatabases(undefined, 3, prefix);
  await migrateShards(urls);
  app = await startTestApp({ shardUrls: urls });
});
afterAll(async () => {
  await app?.shutdown();
  if (urls.length > 0) await dropShardDatabases(urls);
});

/** Runs the operator command the way `npm run check-stock` does; returns its exit code and output. */
async function checkStock(
  shardUrls: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", "src/check-stock.ts"], {
    env: { ...process.env, SHARD_URLS: shardUrls, LOG_LEVEL: "error" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const [code] = await once(child, "exit");
  return { code: code as number | null, stdout, stderr };
}

describe("npm run check-stock", () => {
  it("exits 0 on clean shards, 2 naming the product once a ledger row is gone", async () => {
    const ps = await Promise.all(
      [0, 1, 2].map((s) =>
        seedProduct(inv(), userOnShard(app, s, "seller"), { stock: { main: 6, spare: 2 } }),
      ),
    );
    const clean = await checkStock(urls.join(","));
    expect(clean.code, clean.stderr).toBe(0);
    expect(clean.stdout).toContain("no violations");
    expect(clean.stdout).not.toContain("violation shard=");

    // Corrupt shard 2: drop the ledger row that received the product's "main" stock.
    const victim = ps[2];
    const shard = app.shards.forId(victim?.id ?? "", "prd", "product_id");
    const deleted = await shard
      .fork()
      .execute<{ affectedRows: number }>(
        "delete from stock_movements where product_id = ? and warehouse_id = 'main'",
        [victim?.id],
        "run",
      );
    expect(deleted.affectedRows).toBeGreaterThan(0);

    const broken = await checkStock(urls.join(","));
    expect(broken.code, broken.stderr).toBe(2);
    const lines = broken.stdout.split("\n").filter((l) => l.startsWith("violation "));
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) {
      expect(line).toContain(`product=${victim?.id}`);
      expect(line).toContain("warehouse=main");
      expect(line).toContain(`shard=${shard.index}`);
    }
    expect(lines.some((l) => l.includes("rule=ledger"))).toBe(true);
    // The untouched products and the untouched warehouse are not reported.
    for (const p of ps.slice(0, 2)) expect(broken.stdout).not.toContain(p.id);
    expect(broken.stdout).not.toContain("warehouse=spare");
    expect(broken.stdout).toMatch(/FAILED: \d+ violations/);
  });

  it("checks orders too: a total that no longer equals the sum of its items is reported by order id", async () => {
    const seller = userOnShard(app, 0, "seller");
    const p = await seedProduct(inv(), seller, { price: 300, stock: { main: 5 } });
    const buyer = userOnShard(app, 1, "buyer");
    const ord = client(OrderService, transportFor("connect-json-http1", app.port));
    const { order } = await ord.createOrder({
      userId: buyer,
      source: { case: "items", value: { items: [{ productId: p.id, quantity: 2n }] } },
      customerEmail: "buyer@example.com",
      idempotencyKey: `k-${process.pid}-orders`,
    });
    const before = await checkStock(urls.join(","));
    expect(before.stdout).not.toContain(order?.id ?? "");

    await app.shards
      .forUser(buyer)
      .fork()
      .execute("update orders set total_minor = total_minor + 1 where id = ?", [order?.id]);
    const broken = await checkStock(urls.join(","));
    expect(broken.code, broken.stderr).toBe(2);
    const line = broken.stdout.split("\n").find((l) => l.includes(`order=${order?.id}`));
    expect(line).toContain("total 601 != sum of items 600");
  });

  it("exits 1 with a message when a shard cannot be reached", async () => {
    const out = await checkStock(`${urls[0]},postgres://postgres@127.0.0.1:1/nowhere`);
    expect(out.code).toBe(1);
    expect(out.stderr).toContain("stock check failed");
    expect(out.stdout).not.toMatch(/^ok:/m);
  });
});
