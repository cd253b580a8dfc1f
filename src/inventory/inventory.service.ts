import type { EntityManager } from "@mikro-orm/postgresql";
import { DomainError } from "../errors.js";
import { claimFor, runIdempotent } from "../idempotency/idempotency.js";
import { newId, parseId } from "../shard/ids.js";
import {
  decodePageToken,
  encodePageToken,
  keysetPage,
  listingHash,
  mergePages,
} from "../shard/page-token.js";
import { bucketOfUser } from "../shard/router.js";
import type { ShardSet } from "../shard/shards.js";
import type {
  AdjustStockInput,
  AdjustStockResult,
  Availability,
  CreateProductInput,
  ListMovementsInput,
  ListProductsInput,
  MovementView,
  Page,
  ProductView,
  StockViolation,
  UpdateProductInput,
} from "./inventory.model.js";
import { checkShardStock, PRODUCT_ORDER, productSortKey, selectProductPage } from "./inventory.queries.js";
import * as repo from "./inventory.repository.js";

export type InventoryService = ReturnType<typeof createInventoryService>;

/** The inventory use cases. Inputs are already validated by the handler; ids route to their shard. */
export function createInventoryService(deps: { shards: ShardSet }) {
  const { shards } = deps;

  async function loadProducts(em: EntityManager, rows: Record<string, unknown>[]): Promise<ProductView[]> {
    const stock = await repo.stockOf(
      em,
      rows.map((r) => String(r.id)),
    );
    return rows.map((r) => repo.toProduct(r, stock.get(String(r.id)) ?? []));
  }

  async function requireProduct(em: EntityManager, productId: string): Promise<Record<string, unknown>> {
    const row = await repo.findProductRow(em, productId);
    if (!row) throw new DomainError("not_found", "product_id: no such product", { field: "product_id" });
    return row;
  }

  return {
    async createProduct(input: CreateProductInput): Promise<ProductView> {
      const bucket = bucketOfUser(input.sellerId);
      const { idempotencyKey, ...request } = input;
      const claim = claimFor(`seller:${input.sellerId}`, "CreateProduct", idempotencyKey, request);
      return runIdempotent(shards.forBucket(bucket).fork(), claim, async (tx) => {
        const id = newId("prd", bucket);
        const row = await repo.insertProduct(tx, { ...input, id, bucket });
        for (const { warehouseId, quantity } of input.initialStock) {
          if (quantity === 0) {
            await tx.execute("insert into stock (product_id, warehouse_id) values (?, ?)", [id, warehouseId]);
            continue;
          }
          const movementId = newId("mov", bucket);
          await repo.applyMove(tx, {
            movementId,
            productId: id,
            warehouseId,
            kind: "received",
            quantity,
            reason: "initial stock",
            reference: "",
          });
        }
        return (await loadProducts(tx, [row]))[0] as ProductView;
      });
    },

    async getProduct(productId: string): Promise<ProductView> {
      const em = shards.forId(productId, "prd", "product_id").fork();
      return (await loadProducts(em, [await requireProduct(em, productId)]))[0] as ProductView;
    },

    async updateProduct(input: UpdateProductInput): Promise<ProductView> {
      const em = shards.forId(input.productId, "prd", "product_id").fork();
      const { idempotencyKey, ...request } = input;
      const claim = claimFor(`product:${input.productId}`, "UpdateProduct", idempotencyKey, request);
      return runIdempotent(em, claim, async (tx) => {
        const row = await repo.updateProductRow(tx, {
          ...input,
          priceMinor: input.price.amountMinor,
          currencyCode: input.price.currencyCode,
        });
        if (!row) {
          const current = await requireProduct(tx, input.productId);
          throw new DomainError(
            "version_conflict",
            `expected_version: the product is at version ${current.version}, not ${input.expectedVersion}`,
            { field: "expected_version" },
          );
        }
        return (await loadProducts(tx, [row]))[0] as ProductView;
      });
    },

    async listProducts(input: ListProductsInput): Promise<Page<ProductView>> {
      const filter = {
        sellerId: input.sellerId,
        nameContains: input.nameContains,
        category: input.category,
        minPriceMinor: input.minPriceMinor,
        maxPriceMinor: input.maxPriceMinor,
      };
      const listing = listingHash({ filter, sort: input.sort });
      const token = decodePageToken(input.pageToken, listing);
      const targets = input.sellerId === null ? shards.shards : [shards.forUser(input.sellerId)];
      const pages = await Promise.all(
        targets.map(async (shard) => {
          const em = shard.fork();
          const rows = await selectProductPage(
            em,
            filter,
            input.sort,
            token?.after ?? null,
            input.pageSize + 1,
          );
          return loadProducts(em, rows);
        }),
      );
      const { rows, more } = mergePages(pages, compareProducts(input.sort), input.pageSize);
      const last = rows.at(-1);
      return {
        items: rows,
        nextPageToken:
          more && last ? encodePageToken({ after: productSortKey(input.sort, last) }, listing) : "",
      };
    },

    async adjustStock(input: AdjustStockInput): Promise<AdjustStockResult> {
      const { bucket } = parseId(input.productId, "prd", "product_id");
      const { idempotencyKey, ...request } = input;
      const claim = claimFor(`product:${input.productId}`, "AdjustStock", idempotencyKey, request);
      return runIdempotent(shards.forBucket(bucket).fork(), claim, async (tx) => {
        await requireProduct(tx, input.productId);
        const quantity = Math.abs(input.delta);
        const kind = input.delta > 0 ? "received" : "written_off";
        const moved = await repo.applyMove(tx, {
          movementId: newId("mov", bucket),
          productId: input.productId,
          warehouseId: input.warehouseId,
          kind,
          quantity,
          reason: input.reason,
          reference: "",
        });
        if (!moved) {
          const stock = await repo.stockRow(tx, input.productId, input.warehouseId);
          const available = stock?.available ?? 0;
          throw new DomainError(
            "insufficient_stock",
            `delta: cannot write off ${quantity}, only ${available} available`,
            {
              field: "delta",
              details: [
                {
                  productId: input.productId,
                  warehouseId: input.warehouseId,
                  requested: quantity,
                  available,
                },
              ],
            },
          );
        }
        return moved;
      });
    },

    async getAvailability(
      productIds: string[],
    ): Promise<{ availability: Availability[]; missing: string[] }> {
      const byShard = new Map<number, string[]>();
      productIds.forEach((id, i) => {
        const shard = shards.forId(id, "prd", `product_ids[${i}]`).index;
        byShard.set(shard, [...(byShard.get(shard) ?? []), id]);
      });
      const found = new Map<string, Availability>();
      await Promise.all(
        [...byShard].map(async ([index, ids]) => {
          const em = (shards.shards[index] as (typeof shards.shards)[number]).fork();
          const existing = await em.execute<{ id: string }[]>("select id from products where id in (?)", [
            ids,
          ]);
          const stock = await repo.stockOf(
            em,
            existing.map((r) => r.id),
          );
          for (const { id } of existing) {
            const levels = stock.get(id) ?? [];
            const warehouses = levels.map((l) => ({ warehouseId: l.warehouseId, quantity: l.available }));
            found.set(id, {
              productId: id,
              totalAvailable: warehouses.reduce((s, w) => s + w.quantity, 0),
              warehouses,
            });
          }
        }),
      );
      return {
        availability: productIds.flatMap((id) => found.get(id) ?? []),
        missing: productIds.filter((id) => !found.has(id)),
      };
    },

    async listStockMovements(input: ListMovementsInput): Promise<Page<MovementView>> {
      const em = shards.forId(input.productId, "prd", "product_id").fork();
      await requireProduct(em, input.productId);
      const listing = listingHash({ productId: input.productId, warehouseId: input.warehouseId });
      const token = decodePageToken(input.pageToken, listing);
      const rows = await repo.listMovements(em, {
        productId: input.productId,
        warehouseId: input.warehouseId,
        beforeId: (token?.after[0] as string) ?? null,
        limit: input.pageSize + 1,
      });
      return keysetPage(rows, input.pageSize, (r) => [r.id], listing);
    },

    async checkStockInvariant(): Promise<{ checked: number; violations: StockViolation[] }> {
      const results = await Promise.all(shards.shards.map((s) => checkShardStock(s.fork(), s.index)));
      return {
        checked: results.reduce((sum, r) => sum + r.checked, 0),
        violations: results.flatMap((r) => r.violations),
      };
    },
  };
}

function compareProducts(sort: ListProductsInput["sort"]) {
  const { desc } = PRODUCT_ORDER[sort];
  return (a: ProductView, b: ProductView): number => {
    const ka = productSortKey(sort, a);
    const kb = productSortKey(sort, b);
    for (let i = 0; i < ka.length; i++) {
      const x = ka[i] as string | number;
      const y = kb[i] as string | number;
      if (x !== y) return (x < y ? -1 : 1) * (desc ? -1 : 1);
    }
    return 0;
  };
}
