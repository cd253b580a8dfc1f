import { defineEntity, p } from "@mikro-orm/core";

/**
 * Seller-owned rows. The tables are created by src/migrations (the schema, with its CHECK
 * constraints, is the source of truth); these definitions map them for reads. Stock changes never go
 * through the unit of work: they are conditional UPDATEs in inventory.repository.ts.
 */
export const Product = defineEntity({
  name: "Product",
  tableName: "products",
  properties: {
    id: p.string().primary(),
    bucket: p.smallint(),
    sellerId: p.string(),
    sku: p.string(),
    name: p.string(),
    description: p.text(),
    category: p.string(),
    priceMinor: p.bigint("number"),
    currencyCode: p.string().length(3),
    version: p.bigint("number"),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
  },
});

/** Stock of one product in one warehouse: available + held + sold = received - written_off. */
export const Stock = defineEntity({
  name: "Stock",
  tableName: "stock",
  properties: {
    productId: p.string().primary(),
    warehouseId: p.string().primary(),
    available: p.bigint("number"),
    held: p.bigint("number"),
    sold: p.bigint("number"),
    received: p.bigint("number"),
    writtenOff: p.bigint("number"),
    version: p.bigint("number"),
    updatedAt: p.datetime(),
  },
});

/** One ledger row: per product and warehouse, the deltas sum to the stock columns. */
export const StockMovement = defineEntity({
  name: "StockMovement",
  tableName: "stock_movements",
  properties: {
    id: p.string().primary(),
    productId: p.string(),
    warehouseId: p.string(),
    kind: p.string(),
    quantity: p.bigint("number"),
    dAvailable: p.bigint("number"),
    dHeld: p.bigint("number"),
    dSold: p.bigint("number"),
    dReceived: p.bigint("number"),
    dWrittenOff: p.bigint("number"),
    reason: p.text(),
    reference: p.string(),
    createdAt: p.datetime(),
  },
});

export const inventoryEntities = [Product, Stock, StockMovement];
