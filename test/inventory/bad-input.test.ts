import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import type { App } from "../../src/app.js";
import { startTestApp, unique } from "../harness/app.js";
import { client, transportFor } from "../harness/clients.js";
import { expectError } from "../harness/errors.js";
import { seedProduct } from "./seed.js";

let app: App & { port: number };
const inv = () => client(InventoryService, transportFor("connect-json-http1", app.port));
const seller = unique("badinput");
let productId = "";

beforeAll(async () => {
  app = await startTestApp();
  productId = (await seedProduct(inv(), seller, { stock: { main: 5 } })).id;
});
afterAll(async () => {
  await app?.shutdown();
});

const long = (n: number) => "x".repeat(n);
const price = { amountMinor: 100n, currencyCode: "EUR" };
const create = (over: object) => ({
  sellerId: seller,
  sku: unique("s"),
  name: "n",
  price,
  idempotencyKey: unique("k"),
  ...over,
});
const adjust = (over: object) => ({
  productId,
  warehouseId: "main",
  delta: 1n,
  reason: "r",
  idempotencyKey: unique("k"),
  ...over,
});
const update = (over: object) => ({
  productId,
  expectedVersion: 1n,
  name: "n",
  price,
  idempotencyKey: unique("k"),
  ...over,
});

// [rpc, request, the field the error must name]
const cases: [string, () => Promise<unknown>, string][] = [
  ["CreateProduct empty seller", () => inv().createProduct(create({ sellerId: "" })), "seller_id"],
  ["CreateProduct seller too long", () => inv().createProduct(create({ sellerId: long(129) })), "seller_id"],
  ["CreateProduct empty sku", () => inv().createProduct(create({ sku: "" })), "sku"],
  ["CreateProduct sku with spaces", () => inv().createProduct(create({ sku: "a b" })), "sku"],
  ["CreateProduct name too long", () => inv().createProduct(create({ name: long(201) })), "name"],
  [
    "CreateProduct description too long",
    () => inv().createProduct(create({ description: long(4001) })),
    "description",
  ],
  ["CreateProduct no price", () => inv().createProduct(create({ price: undefined })), "price"],
  [
    "CreateProduct negative price",
    () => inv().createProduct(create({ price: { amountMinor: -1n, currencyCode: "EUR" } })),
    "price.amount_minor",
  ],
  [
    "CreateProduct bad currency",
    () => inv().createProduct(create({ price: { amountMinor: 1n, currencyCode: "eur" } })),
    "price.currency_code",
  ],
  [
    "CreateProduct negative stock",
    () => inv().createProduct(create({ initialStock: [{ warehouseId: "w", quantity: -1n }] })),
    "initial_stock[0].quantity",
  ],
  [
    "CreateProduct bad warehouse",
    () => inv().createProduct(create({ initialStock: [{ warehouseId: "", quantity: 1n }] })),
    "initial_stock[0].warehouse_id",
  ],
  [
    "CreateProduct repeated warehouse",
    () =>
      inv().createProduct(
        create({
          initialStock: [
            { warehouseId: "w", quantity: 1n },
            { warehouseId: "w", quantity: 1n },
          ],
        }),
      ),
    "initial_stock[1].warehouse_id",
  ],
  [
    "CreateProduct no idempotency key",
    () => inv().createProduct(create({ idempotencyKey: "" })),
    "idempotency_key",
  ],
  [
    "CreateProduct key too long",
    () => inv().createProduct(create({ idempotencyKey: long(129) })),
    "idempotency_key",
  ],
  ["GetProduct empty id", () => inv().getProduct({ productId: "" }), "product_id"],
  ["GetProduct malformed id", () => inv().getProduct({ productId: "prd_nothing" }), "product_id"],
  [
    "GetProduct id of another kind",
    () => inv().getProduct({ productId: "ord_00000000000000000000000000" }),
    "product_id",
  ],
  ["UpdateProduct malformed id", () => inv().updateProduct(update({ productId: "x" })), "product_id"],
  [
    "UpdateProduct zero version",
    () => inv().updateProduct(update({ expectedVersion: 0n })),
    "expected_version",
  ],
  ["UpdateProduct empty name", () => inv().updateProduct(update({ name: "" })), "name"],
  [
    "UpdateProduct negative price",
    () => inv().updateProduct(update({ price: { amountMinor: -5n, currencyCode: "EUR" } })),
    "price.amount_minor",
  ],
  ["ListProducts page too big", () => inv().listProducts({ pageSize: 101 }), "page_size"],
  ["ListProducts negative page", () => inv().listProducts({ pageSize: -1 }), "page_size"],
  ["ListProducts bad token", () => inv().listProducts({ pageToken: "garbage!" }), "page_token"],
  [
    "ListProducts inverted price range",
    () => inv().listProducts({ minPriceMinor: 5n, maxPriceMinor: 1n }),
    "min_price_minor",
  ],
  ["ListProducts negative min price", () => inv().listProducts({ minPriceMinor: -1n }), "min_price_minor"],
  [
    "ListProducts name filter too long",
    () => inv().listProducts({ nameContains: long(101) }),
    "name_contains",
  ],
  ["AdjustStock zero delta", () => inv().adjustStock(adjust({ delta: 0n })), "delta"],
  ["AdjustStock huge delta", () => inv().adjustStock(adjust({ delta: 10n ** 15n })), "delta"],
  ["AdjustStock empty warehouse", () => inv().adjustStock(adjust({ warehouseId: "" })), "warehouse_id"],
  ["AdjustStock empty reason", () => inv().adjustStock(adjust({ reason: "" })), "reason"],
  ["AdjustStock malformed product", () => inv().adjustStock(adjust({ productId: "prd_" })), "product_id"],
  ["AdjustStock no key", () => inv().adjustStock(adjust({ idempotencyKey: "" })), "idempotency_key"],
  ["GetAvailability no ids", () => inv().getAvailability({ productIds: [] }), "product_ids"],
  [
    "GetAvailability malformed id",
    () => inv().getAvailability({ productIds: [productId, "bad"] }),
    "product_ids[1]",
  ],
  [
    "GetAvailability repeated id",
    () => inv().getAvailability({ productIds: [productId, productId] }),
    "product_ids[1]",
  ],
  [
    "GetAvailability too many ids",
    () => inv().getAvailability({ productIds: Array(201).fill(productId) }),
    "product_ids",
  ],
  ["ListStockMovements malformed id", () => inv().listStockMovements({ productId: "nope" }), "product_id"],
  [
    "ListStockMovements page too big",
    () => inv().listStockMovements({ productId, pageSize: 1000 }),
    "page_size",
  ],
];

describe("bad input", () => {
  it.each(cases)("%s -> INVALID_ARGUMENT naming the field", async (_label, call, field) => {
    await expectError(call(), Code.InvalidArgument, field);
  });

  it("wrote nothing for any refused request", async () => {
    const { products } = await inv().listProducts({ sellerId: seller, pageSize: 100 });
    expect(products).toHaveLength(1);
    expect(products[0]?.version).toBe(1n);
    expect(products[0]?.stock).toHaveLength(1);
    expect(products[0]?.stock[0]?.available).toBe(5n);
    const moves = await inv().listStockMovements({ productId });
    expect(moves.movements).toHaveLength(1);
  });

  it("answers NOT_FOUND for a well-formed id that names nothing", async () => {
    await expectError(
      inv().getProduct({ productId: "prd_00000000000000000000000000" }),
      Code.NotFound,
      "product_id",
    );
    await expectError(
      inv().listStockMovements({ productId: "prd_00000000000000000000000000" }),
      Code.NotFound,
      "product_id",
    );
  });
});
