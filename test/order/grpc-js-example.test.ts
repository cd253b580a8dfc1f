import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import type { App } from "../../src/app.js";
import { startTestApp, unique } from "../harness/app.js";
import { token } from "../harness/auth.js";
import { client, transportFor } from "../harness/clients.js";
import { seedProduct } from "../inventory/seed.js";

// The README's @grpc/grpc-js snippet is docs/examples/grpc-js-order.mjs: run it as a reader would.
let app: App & { port: number };
beforeAll(async () => {
  app = await startTestApp();
});
afterAll(async () => {
  await app?.shutdown();
});

describe("docs/examples/grpc-js-order.mjs", () => {
  it("orders a product over @grpc/grpc-js and watches the order until it is live", async () => {
    const inv = client(InventoryService, transportFor("grpc-h2c", app.port));
    const p = await seedProduct(inv, unique("seller"), { price: 1299, stock: { main: 3 } });
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["docs/examples/grpc-js-order.mjs", p.id, `127.0.0.1:${app.port}`],
      {
        timeout: 20_000,
        env: { ...process.env, SHOP_TOKEN: token({ sub: "checkout", scopes: ["service"] }) },
      },
    );
    const lines = stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^order ord_\S+ SO-\d{8}-\S+ ORDER_STATUS_PENDING total 1299 EUR$/);
    expect(lines.slice(1)).toEqual(["event v1 created -> ORDER_STATUS_PENDING", "live"]);
    expect((await inv.getProduct({ productId: p.id })).product?.stock[0]?.sold).toBe(1n);
  });
});
