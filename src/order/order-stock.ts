import type { EntityManager } from "@mikro-orm/postgresql";
import { invalidArgument } from "../errors.js";
import { returnOrderStock, settleHolds } from "../inventory/holds.repository.js";
import { type PricedProduct, pricesOf } from "../inventory/inventory.repository.js";
import type { Shard } from "../shard/shards.js";
import type { OrderItemView } from "./order.model.js";
import * as repo from "./order.repository.js";
import type { OrderDeps } from "./order.service.js";

/**
 * The stock side of orders, on the sellers' shards: selling the holds of new orders, returning the
 * stock of cancelled ones (each step idempotent per hold, so the repair pass reruns it safely), and
 * reading current prices.
 */
export function createOrderStock(deps: OrderDeps) {
  const { shards, logger } = deps;

  /**
   * Gives back the stock of cancelled orders on their sellers' shards, then marks it returned. A
   * failure is logged and left to the repair pass, which runs the same idempotent steps.
   */
  async function returnStock(shard: Shard, orders: repo.OrderRow[]): Promise<void> {
    const em = shard.fork();
    const items = await repo.itemsOf(
      em,
      orders.map((o) => o.id),
    );
    for (const order of orders) {
      try {
        const lines = items.get(order.id) ?? [];
        await onStockShards(lines, (tx, productIds) => returnOrderStock(tx, order.reservationId, productIds));
        await repo.setStockStatus(em, [order.id], "returning", "returned");
      } catch (err) {
        logger.warn({ err, orderId: order.id }, "returning stock failed; the repair pass will finish it");
      }
    }
  }

  /** Sells the holds of freshly created orders, then marks their stock sold (repaired the same way). */
  async function sellStock(
    shard: Shard,
    orders: { id: string; reservationId: string; items: OrderItemView[] }[],
  ) {
    for (const order of orders) {
      try {
        await onStockShards(order.items, (tx, productIds) =>
          settleHolds(tx, order.reservationId, "sold", productIds),
        );
        await repo.setStockStatus(shard.fork(), [order.id], "reserved", "sold");
      } catch (err) {
        logger.warn(
          { err, orderId: order.id },
          "selling the held stock failed; the repair pass will finish it",
        );
      }
    }
  }

  /** Runs `step` once per stock shard of the lines, each in its own transaction on that shard. */
  async function onStockShards(
    lines: { productId: string }[],
    step: (tx: EntityManager, productIds: string[]) => Promise<unknown>,
  ): Promise<void> {
    const byShard = new Map<Shard, string[]>();
    for (const line of lines) {
      const s = shards.forId(line.productId, "prd", "product_id");
      byShard.set(s, [...(byShard.get(s) ?? []), line.productId]);
    }
    for (const [s, productIds] of byShard) await s.fork().transactional((tx) => step(tx, productIds));
  }

  /** The current prices of the products, read from their sellers' shards. */
  async function priceItems(productIds: string[], field: string): Promise<Map<string, PricedProduct>> {
    const byShard = new Map<Shard, string[]>();
    for (const id of productIds) {
      const s = shards.forId(id, "prd", field);
      byShard.set(s, [...(byShard.get(s) ?? []), id]);
    }
    const found = new Map<string, PricedProduct>();
    await Promise.all(
      [...byShard].map(async ([s, ids]) => {
        for (const [id, p] of await pricesOf(s.fork(), ids)) found.set(id, p);
      }),
    );
    productIds.forEach((id, i) => {
      if (!found.has(id)) throw invalidArgument(`${field}[${i}].product_id`, "names no product");
    });
    const currencies = new Set([...found.values()].map((p) => p.currencyCode));
    if (currencies.size > 1)
      throw invalidArgument(
        field,
        `products priced in different currencies (${[...currencies].sort().join(", ")}) cannot share an order`,
      );
    return found;
  }

  return { returnStock, sellStock, priceItems };
}

export type OrderStock = ReturnType<typeof createOrderStock>;
