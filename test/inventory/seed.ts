import type { Client } from "@connectrpc/connect";
import type { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import { unique } from "../harness/app.js";

/** Named seed: one product of `sellerId` with the given stock per warehouse. */
export async function seedProduct(
  inv: Client<typeof InventoryService>,
  sellerId: string,
  opts: {
    sku?: string;
    name?: string;
    category?: string;
    price?: number;
    stock?: Record<string, number>;
  } = {},
) {
  const { product } = await inv.createProduct({
    sellerId,
    sku: opts.sku ?? unique("sku"),
    name: opts.name ?? "Blue mug",
    category: opts.category ?? "kitchen",
    price: { amountMinor: BigInt(opts.price ?? 1299), currencyCode: "EUR" },
    initialStock: Object.entries(opts.stock ?? { main: 10 }).map(([warehouseId, q]) => ({
      warehouseId,
      quantity: BigInt(q),
    })),
    idempotencyKey: unique("key"),
  });
  if (!product) throw new Error("createProduct returned no product");
  return product;
}
