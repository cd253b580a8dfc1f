import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import type { Money as MoneyMsg } from "../../gen/shop/common/v1/money_pb.js";
import {
  type InventoryService as InventoryServiceDesc,
  ProductSchema,
  ProductSort,
  StockLevelSchema,
  StockMovementKind,
  StockMovementSchema,
} from "../../gen/shop/inventory/v1/inventory_pb.js";
import { invalidArgument } from "../errors.js";
import { parseId } from "../shard/ids.js";
import {
  CURRENCY_RULE,
  checkInt,
  checkOptionalInt,
  checkPageSize,
  checkString,
  IDEMPOTENCY_KEY_RULE,
  USER_ID_RULE,
} from "../validation.js";
import type { Money, MovementKind, MovementView, ProductView, StockLevel } from "./inventory.model.js";
import { checkDistinctWarehouses, checkWarehouseId, INVENTORY_LIMITS as L } from "./inventory.rules.js";
import type { InventoryService } from "./inventory.service.js";

/**
 * The InventoryService edge: protobuf in, validated plain values to the service, plain results back
 * to protobuf. No SQL, no shard choice, no locks here.
 */
export function inventoryHandler(service: InventoryService): ServiceImpl<typeof InventoryServiceDesc> {
  return {
    async createProduct(req) {
      checkDistinctWarehouses(
        req.initialStock.map((w) => w.warehouseId),
        "initial_stock",
      );
      if (req.initialStock.length > L.maxInitialWarehouses)
        throw invalidArgument("initial_stock", `must list at most ${L.maxInitialWarehouses} warehouses`);
      const product = await service.createProduct({
        sellerId: checkString(req.sellerId, "seller_id", USER_ID_RULE),
        sku: checkString(req.sku, "sku", L.sku),
        name: checkString(req.name, "name", L.name),
        description: checkString(req.description, "description", L.description),
        category: checkString(req.category, "category", L.category),
        price: money(req.price, "price"),
        initialStock: req.initialStock.map((w, i) => ({
          warehouseId: checkWarehouseId(w.warehouseId, `initial_stock[${i}].warehouse_id`),
          quantity: checkInt(w.quantity, `initial_stock[${i}].quantity`, 0, L.maxQuantity),
        })),
        idempotencyKey: checkString(req.idempotencyKey, "idempotency_key", IDEMPOTENCY_KEY_RULE),
      });
      return { product: productMsg(product) };
    },

    async getProduct(req) {
      return { product: productMsg(await service.getProduct(productId(req.productId, "product_id"))) };
    },

    async updateProduct(req) {
      const product = await service.updateProduct({
        productId: productId(req.productId, "product_id"),
        expectedVersion: checkInt(req.expectedVersion, "expected_version", 1, Number.MAX_SAFE_INTEGER),
        name: checkString(req.name, "name", L.name),
        description: checkString(req.description, "description", L.description),
        category: checkString(req.category, "category", L.category),
        price: money(req.price, "price"),
        idempotencyKey: checkString(req.idempotencyKey, "idempotency_key", IDEMPOTENCY_KEY_RULE),
      });
      return { product: productMsg(product) };
    },

    async listProducts(req) {
      const minPrice = checkOptionalInt(req.minPriceMinor, "min_price_minor", 0, L.maxPriceMinor);
      const maxPrice = checkOptionalInt(req.maxPriceMinor, "max_price_minor", 0, L.maxPriceMinor);
      if (minPrice !== null && maxPrice !== null && minPrice > maxPrice)
        throw invalidArgument("min_price_minor", "must not exceed max_price_minor");
      const page = await service.listProducts({
        sellerId: req.sellerId === "" ? null : checkString(req.sellerId, "seller_id", USER_ID_RULE),
        nameContains: checkString(req.nameContains, "name_contains", L.nameContains),
        category: checkString(req.category, "category", L.category),
        minPriceMinor: minPrice,
        maxPriceMinor: maxPrice,
        sort: productSort(req.sort),
        pageSize: checkPageSize(req.pageSize, "page_size", L.defaultPageSize, L.maxPageSize),
        pageToken: checkString(req.pageToken, "page_token", { max: 1024 }),
      });
      return { products: page.items.map(productMsg), nextPageToken: page.nextPageToken };
    },

    async adjustStock(req) {
      const result = await service.adjustStock({
        productId: productId(req.productId, "product_id"),
        warehouseId: checkWarehouseId(req.warehouseId, "warehouse_id"),
        delta: nonZero(checkInt(req.delta, "delta", -L.maxQuantity, L.maxQuantity), "delta"),
        reason: checkString(req.reason, "reason", L.reason),
        idempotencyKey: checkString(req.idempotencyKey, "idempotency_key", IDEMPOTENCY_KEY_RULE),
      });
      return { stock: stockMsg(result.stock), movement: movementMsg(result.movement) };
    },

    async getAvailability(req) {
      if (req.productIds.length === 0) throw invalidArgument("product_ids", "is required");
      if (req.productIds.length > L.maxAvailabilityIds)
        throw invalidArgument("product_ids", `must list at most ${L.maxAvailabilityIds} ids`);
      const ids = req.productIds.map((id, i) => productId(id, `product_ids[${i}]`));
      const dup = ids.findIndex((id, i) => ids.indexOf(id) !== i);
      if (dup !== -1) throw invalidArgument(`product_ids[${dup}]`, "repeats an id");
      const { availability, missing } = await service.getAvailability(ids);
      return {
        availability: availability.map((a) => ({
          productId: a.productId,
          totalAvailable: BigInt(a.totalAvailable),
          warehouses: a.warehouses.map((w) => ({ warehouseId: w.warehouseId, quantity: BigInt(w.quantity) })),
        })),
        missingProductIds: missing,
      };
    },

    async listStockMovements(req) {
      const page = await service.listStockMovements({
        productId: productId(req.productId, "product_id"),
        warehouseId: req.warehouseId === "" ? "" : checkWarehouseId(req.warehouseId, "warehouse_id"),
        pageSize: checkPageSize(req.pageSize, "page_size", L.defaultPageSize, L.maxPageSize),
        pageToken: checkString(req.pageToken, "page_token", { max: 1024 }),
      });
      return { movements: page.items.map(movementMsg), nextPageToken: page.nextPageToken };
    },

    async checkStockInvariant() {
      const { checked, violations } = await service.checkStockInvariant();
      return { stockRowsChecked: BigInt(checked), violations };
    },
  };
}

function productId(value: string, field: string): string {
  parseId(value, "prd", field);
  return value;
}

function nonZero(value: number, field: string): number {
  if (value === 0) throw invalidArgument(field, "must not be zero");
  return value;
}

function money(value: MoneyMsg | undefined, field: string): Money {
  if (!value) throw invalidArgument(field, "is required");
  return {
    amountMinor: checkInt(value.amountMinor, `${field}.amount_minor`, 0, L.maxPriceMinor),
    currencyCode: checkString(value.currencyCode, `${field}.currency_code`, CURRENCY_RULE),
  };
}

function productSort(value: ProductSort): "newest" | "price_asc" | "price_desc" {
  switch (value) {
    case ProductSort.UNSPECIFIED:
    case ProductSort.NEWEST:
      return "newest";
    case ProductSort.PRICE_ASC:
      return "price_asc";
    case ProductSort.PRICE_DESC:
      return "price_desc";
    default:
      throw invalidArgument("sort", "is not a known sort");
  }
}

const KIND: Record<MovementKind, StockMovementKind> = {
  received: StockMovementKind.RECEIVED,
  written_off: StockMovementKind.WRITTEN_OFF,
  held: StockMovementKind.HELD,
  released: StockMovementKind.RELEASED,
  sold: StockMovementKind.SOLD,
  returned: StockMovementKind.RETURNED,
};

function stockMsg(s: StockLevel) {
  return create(StockLevelSchema, {
    warehouseId: s.warehouseId,
    available: BigInt(s.available),
    held: BigInt(s.held),
    sold: BigInt(s.sold),
    received: BigInt(s.received),
    writtenOff: BigInt(s.writtenOff),
  });
}

function movementMsg(m: MovementView) {
  return create(StockMovementSchema, {
    id: m.id,
    productId: m.productId,
    warehouseId: m.warehouseId,
    kind: KIND[m.kind],
    quantity: BigInt(m.quantity),
    deltaAvailable: BigInt(m.deltas.available),
    deltaHeld: BigInt(m.deltas.held),
    deltaSold: BigInt(m.deltas.sold),
    deltaReceived: BigInt(m.deltas.received),
    deltaWrittenOff: BigInt(m.deltas.writtenOff),
    reason: m.reason,
    reference: m.reference,
    createTime: timestampFromDate(m.createdAt),
  });
}

function productMsg(p: ProductView) {
  return create(ProductSchema, {
    id: p.id,
    sellerId: p.sellerId,
    sku: p.sku,
    name: p.name,
    description: p.description,
    category: p.category,
    price: { amountMinor: BigInt(p.price.amountMinor), currencyCode: p.price.currencyCode },
    version: BigInt(p.version),
    stock: p.stock.map(stockMsg),
    createTime: timestampFromDate(p.createdAt),
    updateTime: timestampFromDate(p.updatedAt),
  });
}
