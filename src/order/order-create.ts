import { DomainError } from "../errors.js";
import { checkKeyMatches, claimFor, type IdempotencyClaim } from "../idempotency/idempotency.js";
import type { PricedProduct } from "../inventory/inventory.repository.js";
import type { ReservationView } from "../reservation/reservation.model.js";
import * as reservationRepo from "../reservation/reservation.repository.js";
import { newId } from "../shard/ids.js";
import { bucketOfUser } from "../shard/router.js";
import type { OrderItemView, OrderView } from "./order.model.js";
import * as repo from "./order.repository.js";
import type { CreateOrderInput, OrderDeps } from "./order.service.js";
import type { OrderCore } from "./order-core.js";
import { appendEvent } from "./order-events.repository.js";
import type { OrderStock } from "./order-stock.js";

/** CreateOrder: confirm a reservation into an order (or reserve items first, then confirm). */
export function createOrderCreation(deps: OrderDeps, core: OrderCore, stock: OrderStock) {
  const { shards, logger } = deps;
  const { mutate, view } = core;
  const { priceItems, sellStock } = stock;

  /**
   * Confirms an ACTIVE reservation into an order, in one transaction on the buyer's shard: the key,
   * the reservation (now CONFIRMED), the order(s) with status PENDING and stock `reserved`, and the
   * history. Then the holds are sold on the sellers' shards; a crash before that is finished by the
   * repair pass, which sells the holds of `reserved` orders (the sweeper never releases the holds of
   * a CONFIRMED reservation).
   */
  async function confirmReservation(
    input: { userId: string; reservationId: string; customerEmail: string },
    claim: IdempotencyClaim,
    reservation: ReservationView,
  ): Promise<OrderView> {
    const prices = await priceItems(
      reservation.items.map((i) => i.productId),
      "reservation_id",
    );
    const bucket = bucketOfUser(input.userId);
    const shard = shards.forBucket(bucket);
    const toSell: { id: string; reservationId: string; items: OrderItemView[] }[] = [];
    const result = await mutate<OrderView>(shard, claim, async (tx, out) => {
      const r = await reservationRepo.findReservation(tx, input.reservationId, true);
      if (!r || r.userId !== input.userId)
        throw new DomainError("not_found", "reservation_id: no such reservation", {
          field: "reservation_id",
        });
      if (r.status !== "active" || (await reservationRepo.isPastExpiry(tx, r.id))) {
        const why =
          r.status === "active" ? "expired" : r.status === "pending" ? "still being created" : r.status;
        throw new DomainError("reservation_expired", `reservation_id: the reservation is ${why}`, {
          field: "reservation_id",
        });
      }
      await reservationRepo.transition(tx, r.id, ["active"], "confirmed");

      const lines: OrderItemView[] = r.items.map((item) => {
        const p = prices.get(item.productId) as PricedProduct;
        return {
          productId: item.productId,
          sellerId: p.sellerId,
          warehouseId: item.warehouseId,
          sku: p.sku,
          name: p.name,
          quantity: item.quantity,
          unitPriceMinor: p.priceMinor,
          lineTotalMinor: p.priceMinor * item.quantity,
          refundedQuantity: 0,
        };
      });
      const currencyCode = (prices.values().next().value as PricedProduct).currencyCode;
      const sellers = [...new Set(lines.map((l) => l.sellerId))].sort();
      const sum = (ls: OrderItemView[]) => ls.reduce((t, l) => t + l.lineTotalMinor, 0);
      const base = {
        bucket,
        userId: input.userId,
        customerEmail: input.customerEmail,
        reservationId: r.id,
        currencyCode,
      };
      const topId = newId("ord", bucket);
      const created: repo.OrderRow[] = [];
      if (sellers.length === 1) {
        await repo.insertOrder(tx, {
          ...base,
          id: topId,
          parentOrderId: null,
          sellerId: sellers[0] as string,
          totalMinor: sum(lines),
          stockStatus: "reserved",
          items: lines,
        });
        toSell.push({ id: topId, reservationId: r.id, items: lines });
      } else {
        await repo.insertOrder(tx, {
          ...base,
          id: topId,
          parentOrderId: null,
          sellerId: "",
          totalMinor: sum(lines),
          stockStatus: "none",
          items: [],
        });
        for (const seller of sellers) {
          const own = lines.filter((l) => l.sellerId === seller);
          const childId = newId("ord", bucket);
          await repo.insertOrder(tx, {
            ...base,
            id: childId,
            parentOrderId: topId,
            sellerId: seller,
            totalMinor: sum(own),
            stockStatus: "reserved",
            items: own,
          });
          toSell.push({ id: childId, reservationId: r.id, items: own });
        }
      }
      for (const id of [topId, ...toSell.map((o) => o.id).filter((id) => id !== topId)])
        created.push((await repo.findOrderRow(tx, id)) as repo.OrderRow);
      for (const o of created) {
        out.events.push(
          await appendEvent(tx, {
            userId: o.userId,
            orderId: o.id,
            version: 1,
            kind: "created",
            fromStatus: "",
            toStatus: "pending",
            reason: "",
            actor: input.userId,
          }),
        );
      }
      return view(tx, topId);
    });
    if (toSell.length > 0) {
      deps.faultPoint("order_before_sale");
      await sellStock(shard, toSell);
    }
    return result;
  }

  return {
    async create(input: CreateOrderInput): Promise<OrderView> {
      const { idempotencyKey, ...request } = input;
      const claim = claimFor(`buyer:${input.userId}`, "CreateOrder", idempotencyKey, request);
      const buyer = shards.forUser(input.userId);
      if ("reservationId" in input.source) {
        const reservationId = input.source.reservationId;
        const r = await reservationRepo.findReservation(buyer.fork(), reservationId);
        if (!r || r.userId !== input.userId)
          throw new DomainError("not_found", "reservation_id: no such reservation", {
            field: "reservation_id",
          });
        return confirmReservation({ ...input, reservationId }, claim, r);
      }
      // Reserve and confirm in one call: the reservation's own key is derived from the order's (with
      // a space, which no caller key may contain), so a replay reuses the same reservation.
      const items = input.source.items;
      await checkKeyMatches(buyer.fork(), claim);
      await priceItems(
        items.map((i) => i.productId),
        "items.items",
      );
      const reservation = await deps.reservations.reserve({
        userId: input.userId,
        items,
        ttlSeconds: deps.itemsReservationTtlS,
        idempotencyKey: `order ${idempotencyKey}`,
      });
      try {
        return await confirmReservation({ ...input, reservationId: reservation.id }, claim, reservation);
      } catch (e) {
        // The order's key went to another request after our check: this call's reservation (its key
        // is this order key's) must not keep the stock until its TTL.
        if (e instanceof DomainError && e.field === "idempotency_key" && e.reason === "invalid_argument")
          await deps.reservations
            .release(input.userId, reservation.id, `order-release ${idempotencyKey}`)
            .catch((err: unknown) => logger.warn({ err, reservationId: reservation.id }, "release failed"));
        throw e;
      }
    },
  };
}
