/** Plain domain values of the inventory module: no protobuf, no ORM. */

export interface Money {
  amountMinor: number;
  currencyCode: string;
}

export interface StockLevel {
  warehouseId: string;
  available: number;
  held: number;
  sold: number;
  received: number;
  writtenOff: number;
}

export interface ProductView {
  id: string;
  sellerId: string;
  sku: string;
  name: string;
  description: string;
  category: string;
  price: Money;
  version: number;
  stock: StockLevel[];
  createdAt: Date;
  updatedAt: Date;
}

export type MovementKind = "received" | "written_off" | "held" | "released" | "sold" | "returned";

export interface MovementView {
  id: string;
  productId: string;
  warehouseId: string;
  kind: MovementKind;
  quantity: number;
  deltas: Omit<StockLevel, "warehouseId">;
  reason: string;
  reference: string;
  createdAt: Date;
}

export interface WarehouseQuantity {
  warehouseId: string;
  quantity: number;
}

export interface CreateProductInput {
  sellerId: string;
  sku: string;
  name: string;
  description: string;
  category: string;
  price: Money;
  initialStock: WarehouseQuantity[];
  idempotencyKey: string;
}

export interface UpdateProductInput {
  productId: string;
  expectedVersion: number;
  name: string;
  description: string;
  category: string;
  price: Money;
  idempotencyKey: string;
}

export type ProductSort = "newest" | "price_asc" | "price_desc";

export interface ListProductsInput {
  sellerId: string | null;
  nameContains: string;
  category: string;
  minPriceMinor: number | null;
  maxPriceMinor: number | null;
  sort: ProductSort;
  pageSize: number;
  pageToken: string;
}

export interface AdjustStockInput {
  productId: string;
  warehouseId: string;
  delta: number;
  reason: string;
  idempotencyKey: string;
}

export interface AdjustStockResult {
  stock: StockLevel;
  movement: MovementView;
}

export interface Availability {
  productId: string;
  totalAvailable: number;
  warehouses: WarehouseQuantity[];
}

export interface ListMovementsInput {
  productId: string;
  warehouseId: string;
  pageSize: number;
  pageToken: string;
}

export interface StockViolation {
  shard: number;
  productId: string;
  warehouseId: string;
  rule: "balance" | "non_negative" | "ledger" | "holds";
  detail: string;
}

export interface Page<T> {
  items: T[];
  nextPageToken: string;
}
