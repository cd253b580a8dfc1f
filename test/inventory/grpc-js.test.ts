import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import { startTestApp, unique } from "../harness/app.js";
import { grpcJsClient } from "../harness/clients.js";

let app: App & { port: number };
let grpc: ReturnType<typeof grpcJsClient>;

beforeAll(async () => {
  app = await startTestApp();
  grpc = grpcJsClient(
    app.port,
    "proto/shop/inventory/v1/inventory.proto",
    "shop.inventory.v1.InventoryService",
  );
});
afterAll(async () => {
  grpc?.close();
  await app?.shutdown();
});

type ProductMsg = { id: string; version: string; stock: { warehouseId: string; available: string }[] };

describe("InventoryService through a stock @grpc/grpc-js client", () => {
  it("creates, adjusts and reads a product", async () => {
    const created = await grpc.call<{ product: ProductMsg }>("CreateProduct", {
      sellerId: unique("grpcjs"),
      sku: "GJ-1",
      name: "Kettle",
      price: { amountMinor: "2599", currencyCode: "GBP" },
      initialStock: [{ warehouseId: "main", quantity: "3" }],
      idempotencyKey: unique("k"),
    });
    expect(created.product.version).toBe("1");
    const adjusted = await grpc.call<{ stock: { available: string } }>("AdjustStock", {
      productId: created.product.id,
      warehouseId: "main",
      delta: "-2",
      reason: "breakage",
      idempotencyKey: unique("k"),
    });
    expect(adjusted.stock.available).toBe("1");
    const got = await grpc.call<{ product: ProductMsg }>("GetProduct", { productId: created.product.id });
    expect(got.product.stock).toMatchObject([{ warehouseId: "main", available: "1" }]);
  });

  it("maps domain errors to gRPC status codes with the field named", async () => {
    const bad = await grpc
      .call("GetProduct", { productId: "bogus" })
      .catch((e: { code: number; details: string }) => e);
    expect(bad).toMatchObject({ code: status.INVALID_ARGUMENT });
    expect((bad as { details: string }).details).toContain("product_id");
    const missing = await grpc
      .call("GetProduct", { productId: "prd_00000000000000000000000000" })
      .catch((e: { code: number }) => e);
    expect(missing).toMatchObject({ code: status.NOT_FOUND });
  });
});
