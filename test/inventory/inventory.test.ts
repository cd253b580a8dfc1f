import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryService, StockMovementKind } from "../../gen/shop/inventory/v1/inventory_pb.js";
import { OrderService } from "../../gen/shop/order/v1/order_pb.js";
import type { App } from "../../src/app.js";
import { startTestApp, unique } from "../harness/app.js";
import { client, MAIN_TRANSPORTS, transportFor } from "../harness/clients.js";
import { expectError, shortItems } from "../harness/errors.js";
import { seedProduct } from "./seed.js";

let app: App & { port: number };
beforeAll(async () => {
  app = await startTestApp();
});
afterAll(async () => {
  await app?.shutdown();
});

describe.each(MAIN_TRANSPORTS)("InventoryService over %s", (name) => {
  const inv = () => client(InventoryService, transportFor(name, app.port));

  it("creates a product with its stock and reads it back", async () => {
    const seller = unique("seller");
    const created = await seedProduct(inv(), seller, { stock: { main: 7, north: 0 } });
    expect(created.id).toMatch(/^prd_[0-9A-Z]{26}$/);
    expect(created.version).toBe(1n);
    const { product } = await inv().getProduct({ productId: created.id });
    expect(product?.sellerId).toBe(seller);
    expect(product?.price?.amountMinor).toBe(1299n);
    expect(product?.stock.map((s) => [s.warehouseId, s.available, s.received])).toEqual([
      ["main", 7n, 7n],
      ["north", 0n, 0n],
    ]);
  });

  it("answers a replayed CreateProduct with the first answer, and refuses the key for another request", async () => {
    const seller = unique("seller");
    const request = {
      sellerId: seller,
      sku: "MUG-1",
      name: "Mug",
      price: { amountMinor: 500n, currencyCode: "USD" },
      initialStock: [{ warehouseId: "main", quantity: 3n }],
      idempotencyKey: unique("key"),
    };
    const answers = await Promise.all([1, 2, 3].map(() => inv().createProduct(request)));
    expect(new Set(answers.map((a) => a.product?.id)).size).toBe(1);
    expect(answers[1]?.product?.createTime).toEqual(answers[0]?.product?.createTime);
    await expectError(
      inv().createProduct({ ...request, name: "Other" }),
      Code.InvalidArgument,
      "idempotency_key",
    );
    await expectError(
      inv().createProduct({ ...request, idempotencyKey: unique("key") }),
      Code.AlreadyExists,
      "sku",
    );
    const page = await inv().listProducts({ sellerId: seller });
    expect(page.products).toHaveLength(1);
    expect(page.products[0]?.stock[0]?.available).toBe(3n);
  });

  it("updates with the expected version and refuses a stale one with ABORTED", async () => {
    const p = await seedProduct(inv(), unique("seller"));
    const update = {
      productId: p.id,
      expectedVersion: 1n,
      name: "Red mug",
      price: { amountMinor: 999n, currencyCode: "EUR" },
    };
    const { product } = await inv().updateProduct({ ...update, idempotencyKey: unique("key") });
    expect(product?.version).toBe(2n);
    expect(product?.name).toBe("Red mug");
    await expectError(
      inv().updateProduct({ ...update, idempotencyKey: unique("key") }),
      Code.Aborted,
      "expected_version",
    );
    await expectError(
      inv().updateProduct({
        ...update,
        productId: "prd_00000000000000000000000000",
        idempotencyKey: unique("key"),
      }),
      Code.NotFound,
    );
  });

  it("adjusts stock with a ledger row, never below zero", async () => {
    const p = await seedProduct(inv(), unique("seller"), { stock: { main: 5 } });
    const received = await inv().adjustStock({
      productId: p.id,
      warehouseId: "main",
      delta: 4n,
      reason: "delivery",
      idempotencyKey: unique("k"),
    });
    expect(received.stock?.available).toBe(9n);
    expect(received.movement?.kind).toBe(StockMovementKind.RECEIVED);
    const off = await inv().adjustStock({
      productId: p.id,
      warehouseId: "main",
      delta: -9n,
      reason: "flood",
      idempotencyKey: unique("k"),
    });
    expect(off.stock?.available).toBe(0n);
    expect(off.stock?.writtenOff).toBe(9n);
    const err = await expectError(
      inv().adjustStock({
        productId: p.id,
        warehouseId: "main",
        delta: -1n,
        reason: "oops",
        idempotencyKey: unique("k"),
      }),
      Code.FailedPrecondition,
      "delta",
    );
    expect(shortItems(err)[0]).toMatchObject({ productId: p.id, requested: 1n, available: 0n });
    const newWarehouse = await inv().adjustStock({
      productId: p.id,
      warehouseId: "south",
      delta: 2n,
      reason: "new",
      idempotencyKey: unique("k"),
    });
    expect(newWarehouse.stock?.received).toBe(2n);
    const moves = await inv().listStockMovements({ productId: p.id, pageSize: 2 });
    expect(moves.movements.map((m) => m.kind)).toEqual([
      StockMovementKind.RECEIVED,
      StockMovementKind.WRITTEN_OFF,
    ]);
    const rest = await inv().listStockMovements({
      productId: p.id,
      pageSize: 10,
      pageToken: moves.nextPageToken,
    });
    expect(rest.movements.map((m) => Number(m.deltaAvailable))).toEqual([4, 5]);
    expect(rest.nextPageToken).toBe("");
    const main = await inv().listStockMovements({ productId: p.id, warehouseId: "south" });
    expect(main.movements).toHaveLength(1);
  });

  it("lets exactly as many concurrent write-offs win as there is stock", async () => {
    const p = await seedProduct(inv(), unique("seller"), { stock: { main: 10 } });
    const results = await Promise.allSettled(
      Array.from({ length: 30 }, () =>
        inv().adjustStock({
          productId: p.id,
          warehouseId: "main",
          delta: -1n,
          reason: "race",
          idempotencyKey: unique("k"),
        }),
      ),
    );
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(10);
    const { product } = await inv().getProduct({ productId: p.id });
    expect(product?.stock[0]?.available).toBe(0n);
    expect((await inv().checkStockInvariant({})).violations).toEqual([]);
  });

  it("applies a replayed AdjustStock once", async () => {
    const p = await seedProduct(inv(), unique("seller"), { stock: { main: 1 } });
    const req = {
      productId: p.id,
      warehouseId: "main",
      delta: 5n,
      reason: "delivery",
      idempotencyKey: unique("k"),
    };
    const answers = await Promise.all([1, 2, 3].map(() => inv().adjustStock(req)));
    expect(new Set(answers.map((a) => a.movement?.id)).size).toBe(1);
    const { product } = await inv().getProduct({ productId: p.id });
    expect(product?.stock[0]?.available).toBe(6n);
  });

  it("reports availability for products on several shards, in request order", async () => {
    const products = [];
    for (let i = 0; i < 6; i++)
      products.push(await seedProduct(inv(), unique(`seller${i}`), { stock: { a: i, b: 1 } }));
    const shardsUsed = new Set(products.map((p) => app.shards.forId(p.id, "prd", "id").index));
    expect(shardsUsed.size).toBeGreaterThan(1);
    const missing = "prd_00000000000000000000000000";
    const ids = [...products.map((p) => p.id)].reverse();
    const res = await inv().getAvailability({ productIds: [...ids, missing] });
    expect(res.availability.map((a) => a.productId)).toEqual(ids);
    expect(res.availability.map((a) => Number(a.totalAvailable))).toEqual([6, 5, 4, 3, 2, 1]);
    expect(res.missingProductIds).toEqual([missing]);
  });

  it("serves the Order contract next to inventory: a malformed order id is INVALID_ARGUMENT", async () => {
    await expectError(
      client(OrderService, transportFor(name, app.port)).getOrder({ userId: "u", orderId: "o" }),
      Code.InvalidArgument,
      "order_id",
    );
  });
});
