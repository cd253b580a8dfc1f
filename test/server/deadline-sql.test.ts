import { setTimeout as delay } from "node:timers/promises";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import type { App } from "../../src/app.js";
import { startTestApp, unique } from "../harness/app.js";
import { client, transportFor } from "../harness/clients.js";
import { expectError } from "../harness/errors.js";
import { seedProduct } from "../inventory/seed.js";

let app: App & { port: number };
beforeAll(async () => {
  app = await startTestApp({ maxDeadlineMs: 20_000 });
});
afterAll(async () => {
  await app?.shutdown();
});

describe("the caller's deadline is carried into SQL", () => {
  const inv = () => client(InventoryService, transportFor("grpc-h2c", app.port));

  it("caps every pooled connection's statement_timeout at MAX_DEADLINE_MS", async () => {
    const rows = await app.shards.shards[0]
      ?.fork()
      .execute<{ setting: string }[]>("select setting from pg_settings where name = 'statement_timeout'");
    expect(rows?.[0]?.setting).toBe("20000");
  });

  it("a call past its deadline leaves no statement running and commits nothing later", async () => {
    const seller = unique("seller");
    const p = await seedProduct(inv(), seller, { stock: { main: 10 } });
    const shard = app.shards.forId(p.id, "prd", "product_id");
    // Hold the stock row's lock in a transaction of our own, so AdjustStock's UPDATE must wait.
    let release = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const locked = shard.fork().transactional(async (tx) => {
      await tx.execute("select 1 from stock where product_id = ? for update", [p.id]);
      await held;
    });
    await delay(100);

    await expectError(
      inv().adjustStock(
        {
          productId: p.id,
          warehouseId: "main",
          delta: 5n,
          reason: "late delivery",
          idempotencyKey: unique("k"),
        },
        { timeoutMs: 400 },
      ),
      Code.DeadlineExceeded,
    );
    // The database cancelled the waiting statement just before the deadline: nothing of ours waits.
    // (DEADLINE_EXCEEDED still means "outcome unknown" to a caller in general; a retry with the
    // same idempotency key settles it. Here the statement was provably stopped.)
    const waiting = async () =>
      (
        await shard
          .fork()
          .execute<{ n: string }[]>(
            "select count(*) as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
          )
      )[0]?.n;
    let left = await waiting();
    for (let i = 0; i < 20 && left !== "0"; i++) {
      await delay(100);
      left = await waiting();
    }
    expect(left).toBe("0");

    release();
    await locked;
    await delay(300);
    const { product } = await inv().getProduct({ productId: p.id });
    expect(product?.stock[0]?.available).toBe(10n); // the abandoned adjustment never committed
    expect((await inv().checkStockInvariant({})).violations).toEqual([]);
  });
});
