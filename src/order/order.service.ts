import type { Logger } from "pino";
import type { ReservationService } from "../reservation/reservation.service.js";
import type { Shard, ShardSet } from "../shard/shards.js";
import type { OrderEventView, OrderView } from "./order.model.js";
import { type ListOrdersQuery, listOrders, type TopCustomer, topCustomers } from "./order.queries.js";
import * as repo from "./order.repository.js";
import { createOrderCore } from "./order-core.js";
import { createOrderCreation } from "./order-create.js";
import { eventsOfOrder } from "./order-events.repository.js";
import { createOrderMoney } from "./order-money.js";
import { createOrderStatus } from "./order-status.js";
import { createOrderStock } from "./order-stock.js";

/** Named points where a fault test may kill the process between an order's commit and its stock step. */
export type OrderFaultPoint = "order_before_sale" | "cancel_before_return";

export interface OrderDeps {
  shards: ShardSet;
  reservations: ReservationService;
  logger: Logger;
  /** Hands committed events to the watch streams of every instance; never rejects. */
  publish: (events: OrderEventView[]) => Promise<void>;
  faultPoint: (point: OrderFaultPoint) => void;
  /** TTL of the reservation an order made directly from items takes for the moment before it confirms. */
  itemsReservationTtlS: number;
}

export interface CreateOrderInput {
  userId: string;
  source:
    | { reservationId: string }
    | { items: { productId: string; quantity: number; warehouseId: string }[] };
  customerEmail: string;
  idempotencyKey: string;
}

export type OrderService = ReturnType<typeof createOrderService>;

/** The order use cases. Orders live on the buyer's shard; their stock lives on the sellers' shards. */
export function createOrderService(deps: OrderDeps) {
  const { shards } = deps;
  const stock = createOrderStock(deps);
  const core = createOrderCore(deps, stock);
  const { shardOfOrder, ownedRow, view } = core;
  const { sellStock, returnStock } = stock;

  return {
    ...createOrderCreation(deps, core, stock),
    ...createOrderStatus(core),
    ...createOrderMoney(core),

    async get(userId: string, id: string): Promise<{ order: OrderView; children: OrderView[] }> {
      const em = shardOfOrder(id).fork();
      const row = await ownedRow(em, userId, id);
      const order = await view(em, row.id);
      const children = [...(await repo.loadOrders(em, order.childOrderIds)).values()];
      return { order, children: children.sort((a, b) => (a.id < b.id ? -1 : 1)) };
    },

    async history(userId: string, id: string): Promise<OrderEventView[]> {
      const em = shardOfOrder(id).fork();
      await ownedRow(em, userId, id);
      return eventsOfOrder(em, id, 0, 100_000);
    },

    /** One ListOrders page: one statement per shard asked (order.queries.ts). */
    list(q: ListOrdersQuery): Promise<{ orders: OrderView[]; nextPageToken: string }> {
      return listOrders(shards, q);
    },

    topCustomers(limit: number, currencyCode: string): Promise<TopCustomer[]> {
      return topCustomers(shards, limit, currencyCode);
    },

    /**
     * The repair pass of one shard (run by the sweeper): orders whose stock step did not finish after
     * a crash, older than the bound. Sells the holds of `reserved` orders and returns the stock of
     * `returning` ones, with the same idempotent steps the requests use.
     */
    async repairShard(shard: Shard, olderThanSeconds: number): Promise<number> {
      const rows = await repo.ordersToRepair(shard.fork(), olderThanSeconds, 100);
      const items = await repo.itemsOf(
        shard.fork(),
        rows.map((r) => r.id),
      );
      const reserved = rows.filter((r) => r.stockStatus === "reserved");
      await sellStock(
        shard,
        reserved.map((r) => ({ id: r.id, reservationId: r.reservationId, items: items.get(r.id) ?? [] })),
      );
      await returnStock(
        shard,
        rows.filter((r) => r.stockStatus === "returning"),
      );
      return rows.length;
    },
  };
}
