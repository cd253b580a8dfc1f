/**
 * Idempotency records are kept IDEMPOTENCY_RETENTION_H, then the sweeper deletes the finished ones;
 * records still claimed by running work are never deleted, whatever their age.
 */

import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import type { App } from "../../src/app.js";
import { createSweeper } from "../../src/reservation/sweeper.js";
import { startTestApp, unique } from "../harness/app.js";
import { client, transportFor } from "../harness/clients.js";
import { seedProduct } from "../inventory/seed.js";

let app: App & { port: number };
beforeAll(async () => {
  app = await startTestApp();
});
afterAll(async () => {
  await app?.shutdown();
});

const RETENTION_S = 3600;

describe("idempotency record retention", () => {
  it("deletes finished records past the retention, keeps recent and in-flight ones", async () => {
    const shard = app.shards.shards[0];
    if (!shard) throw new Error("no shard");
    const scope = unique("scope");
    const insert = (key: string, response: string, ageS: number) =>
      shard.fork().execute(
        `insert into idempotency_records (scope, key, request_hash, response, created_at)
           values (?, ?, 'h', ?::jsonb, now() - make_interval(secs => ?))`,
        [scope, key, response, ageS],
      );
    await insert("old-done", '{"id":"x"}', 2 * RETENTION_S);
    await insert("new-done", '{"id":"y"}', 60);
    await insert("old-claimed", "null", 2 * RETENTION_S);
    await insert("old-saga", '{"$pending":"res_1"}', 2 * RETENTION_S);

    const sweeper = createSweeper(
      { shards: app.shards, logger: pino({ level: "silent" }) },
      { intervalMs: 60_000, intentTimeoutSeconds: 60, idempotencyRetentionSeconds: RETENTION_S },
    );
    await sweeper.runOnce();
    const left = await shard
      .fork()
      .execute<{ key: string }[]>("select key from idempotency_records where scope = ? order by key", [
        scope,
      ]);
    expect(left.map((r) => r.key)).toEqual(["new-done", "old-claimed", "old-saga"]);
    expect(sweeper.counts.idempotencyRecordsExpired).toBeGreaterThanOrEqual(1);
    expect(sweeper.counts.errors).toBe(0);
  });

  it("after the retention a replay is a new request: the key's first answer is gone", async () => {
    const inv = client(InventoryService, transportFor("grpc-h2c", app.port));
    const p = await seedProduct(inv, unique("seller"), { stock: { main: 10 } });
    const request = {
      productId: p.id,
      warehouseId: "main",
      delta: 2n,
      reason: "delivery",
      idempotencyKey: unique("k"),
    };
    await inv.adjustStock(request);
    await inv.adjustStock(request); // within the retention: the same answer, one effect
    expect((await inv.getProduct({ productId: p.id })).product?.stock[0]?.available).toBe(12n);

    const shard = app.shards.forId(p.id, "prd", "product_id");
    await shard
      .fork()
      .execute("update idempotency_records set created_at = now() - make_interval(secs => ?) where key = ?", [
        2 * RETENTION_S,
        request.idempotencyKey,
      ]);
    const sweeper = createSweeper(
      { shards: app.shards, logger: pino({ level: "silent" }) },
      { intervalMs: 60_000, intentTimeoutSeconds: 60, idempotencyRetentionSeconds: RETENTION_S },
    );
    await sweeper.runOnce();
    await inv.adjustStock(request);
    expect((await inv.getProduct({ productId: p.id })).product?.stock[0]?.available).toBe(14n);
    expect((await inv.checkStockInvariant({})).violations).toEqual([]);
  });
});
