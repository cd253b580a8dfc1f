import type { EntityManager } from "@mikro-orm/postgresql";
import type { Logger } from "pino";
import { DomainError, invalidArgument } from "../errors.js";
import {
  checkKeyMatches,
  claimKey,
  completeKey,
  hashRequest,
  type IdempotencyClaim,
  inFlight,
} from "../idempotency/idempotency.js";
import { returnOrderStock, settleHolds } from "../inventory/holds.repository.js";
import { type PricedProduct, pricesOf } from "../inventory/inventory.repository.js";
import type { ReservationView } from "../reservation/reservation.model.js";
import * as reservationRepo from "../reservation/reservation.repository.js";
import type { ReservationService } from "../reservation/reservation.service.js";
import { newId, parseId } from "../shard/ids.js";
import { bucketOfUser } from "../shard/router.js";
import type { Shard, ShardSet } from "../shard/shards.js";
import {
  canMove,
  type EventKind,
  FINAL,
  type OrderEventView,
  type OrderItemView,
  type OrderStatus,
  type OrderView,
  type PaymentStatus,
  parentStatus,
  SYSTEM_ACTOR,
} from "./order.model.js";
import { type ListOrdersQuery, listOrderIds, type TopCustomer, topCustomers } from "./order.queries.js";
import * as repo from "./order.repository.js";
import { appendEvent, eventsOfOrder } from "./order-events.repository.js";

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

const notFound = () => new DomainError("not_found", "order_id: no such order", { field: "order_id" });

/** What a mutating transaction produced: the answer, and the history rows to publish after commit. */
interface Mutation<T> {
  result: T;
  events: OrderEventView[];
  /** Orders whose stock must be returned after commit (they were just cancelled). */
  returning: repo.OrderRow[];
}

/** The order use cases. Orders live on the buyer's shard; their stock lives on the sellers' shards. */
export function createOrderService(deps: OrderDeps) {
  const { shards, logger } = deps;
  const shardOfOrder = (id: string): Shard => shards.forId(id, "ord", "order_id");

  /**
   * Runs one change in one transaction on the order's shard, at most once per idempotency key: the
   * key, the change and its history rows commit together. After commit the events are published and
   * any cancelled order's stock is returned. A replay gets the first answer and publishes nothing.
   */
  async function mutate<T>(
    shard: Shard,
    claim: IdempotencyClaim,
    work: (tx: EntityManager, out: Mutation<T>) => Promise<T>,
  ): Promise<T> {
    const done = await shard
      .fork()
      .transactional(async (tx): Promise<{ replay: T } | { out: Mutation<T> }> => {
        const prior = await claimKey(tx, claim);
        if (prior.state === "done") return { replay: prior.response as T };
        if (prior.state === "pending") throw inFlight();
        const out: Mutation<T> = { result: undefined as T, events: [], returning: [] };
        out.result = await work(tx, out);
        await completeKey(tx, claim, out.result);
        return { out };
      });
    if ("replay" in done) return done.replay;
    await deps.publish(done.out.events);
    if (done.out.returning.length > 0) {
      deps.faultPoint("cancel_before_return");
      await returnStock(shard, done.out.returning);
    }
    return done.out.result;
  }

  /** Appends a history row for a change that moved `order` to `version`. */
  async function record(
    tx: EntityManager,
    out: Mutation<unknown>,
    order: repo.OrderRow,
    version: number,
    change: { kind: EventKind; to: OrderStatus; reason: string; actor: string },
  ): Promise<void> {
    out.events.push(
      await appendEvent(tx, {
        userId: order.userId,
        orderId: order.id,
        version,
        kind: change.kind,
        fromStatus: order.status,
        toStatus: change.to,
        reason: change.reason,
        actor: change.actor,
      }),
    );
  }

  /**
   * Moves one order that holds stock (a child or a single-seller order) to `to`, after the table
   * allows it; a cancel marks its stock as returning. Then a parent follows its children.
   */
  async function moveStatus(
    tx: EntityManager,
    out: Mutation<unknown>,
    order: repo.OrderRow,
    to: OrderStatus,
    reason: string,
    actor: string,
  ): Promise<void> {
    if (!canMove(order.status, to))
      throw new DomainError(
        "illegal_transition",
        `status: an order cannot move from ${order.status.toUpperCase()} to ${to.toUpperCase()}`,
        { field: "status" },
      );
    const cancel = to === "cancelled";
    const stockStatus = cancel && order.stockStatus !== "returned" ? "returning" : undefined;
    const version = await repo.updateOrder(tx, order.id, { status: to, stockStatus });
    await record(tx, out, order, version, { kind: "status", to, reason, actor });
    if (cancel) out.returning.push({ ...order, status: to });
  }

  /** A parent's status follows its children (after they changed in this transaction). */
  async function followChildren(tx: EntityManager, out: Mutation<unknown>, parentId: string): Promise<void> {
    const parent = (await repo.findOrderRow(tx, parentId, true)) as repo.OrderRow;
    const children = await repo.childRows(tx, parentId);
    const next = parentStatus(children.map((c) => c.status));
    if (next === parent.status) return;
    const version = await repo.updateOrder(tx, parentId, { status: next });
    await record(tx, out, parent, version, {
      kind: "status",
      to: next,
      reason: "follows its child orders",
      actor: SYSTEM_ACTOR,
    });
  }

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

  /** The buyer's order or NOT_FOUND (also for another user's: no existence leak). */
  async function ownedRow(em: EntityManager, userId: string | null, id: string, lock = false) {
    const o = await repo.findOrderRow(em, id, lock);
    if (!o || (userId !== null && o.userId !== userId)) throw notFound();
    return o;
  }

  async function view(em: EntityManager, id: string): Promise<OrderView> {
    return (await repo.loadOrder(em, id)) as OrderView;
  }

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
      const claim = {
        scope: `buyer:${input.userId}`,
        key: idempotencyKey,
        requestHash: hashRequest("CreateOrder", request),
      };
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

    async list(q: ListOrdersQuery): Promise<{ orders: OrderView[]; nextPageToken: string }> {
      const page = await listOrderIds(shards, q);
      const byShard = new Map<Shard, string[]>();
      for (const id of page.ids) {
        const s = shardOfOrder(id);
        byShard.set(s, [...(byShard.get(s) ?? []), id]);
      }
      const views = new Map<string, OrderView>();
      await Promise.all(
        [...byShard].map(async ([s, ids]) => {
          for (const [id, v] of await repo.loadOrders(s.fork(), ids)) views.set(id, v);
        }),
      );
      return {
        orders: page.ids.map((id) => views.get(id)).filter((v): v is OrderView => v !== undefined),
        nextPageToken: page.nextPageToken,
      };
    },

    topCustomers(limit: number, currencyCode: string): Promise<TopCustomer[]> {
      return topCustomers(shards, limit, currencyCode);
    },

    /** Moves a child or single-seller order along the table, guarded by expected_version. */
    async updateStatus(input: {
      orderId: string;
      status: OrderStatus;
      expectedVersion: number;
      reason: string;
      idempotencyKey: string;
      /** Who asks (recorded in the history; not part of the idempotent request). */
      actor: string;
    }): Promise<OrderView> {
      const { idempotencyKey, actor, ...request } = input;
      const claim = {
        scope: `order:${input.orderId}`,
        key: idempotencyKey,
        requestHash: hashRequest("UpdateOrderStatus", request),
      };
      return mutate<OrderView>(shardOfOrder(input.orderId), claim, async (tx, out) => {
        const order = await ownedRow(tx, null, input.orderId, true);
        if (order.version !== input.expectedVersion)
          throw new DomainError(
            "version_conflict",
            `expected_version: the order is at version ${order.version}, not ${input.expectedVersion}`,
            { field: "expected_version" },
          );
        if (repo.isParent(order))
          throw new DomainError(
            "illegal_transition",
            "order_id: a multi-seller order's status follows its child orders; change those",
            { field: "order_id" },
          );
        await moveStatus(tx, out, order, input.status, input.reason, actor);
        if (order.parentOrderId) await followChildren(tx, out, order.parentOrderId);
        return view(tx, order.id);
      });
    },

    /**
     * Cancels an order from an early status and returns its stock; a parent cancels every child that
     * is not cancelled yet (all or nothing). Nothing is deleted.
     */
    async cancel(input: {
      userId: string;
      orderId: string;
      expectedVersion: number | null;
      reason: string;
      idempotencyKey: string;
    }): Promise<OrderView> {
      const { idempotencyKey, ...request } = input;
      const claim = {
        scope: `buyer:${input.userId}`,
        key: idempotencyKey,
        requestHash: hashRequest("CancelOrder", request),
      };
      return mutate<OrderView>(shardOfOrder(input.orderId), claim, async (tx, out) => {
        const order = await ownedRow(tx, input.userId, input.orderId, true);
        if (input.expectedVersion !== null && order.version !== input.expectedVersion)
          throw new DomainError(
            "version_conflict",
            `expected_version: the order is at version ${order.version}, not ${input.expectedVersion}`,
            { field: "expected_version" },
          );
        if (repo.isParent(order)) {
          if (order.status === "cancelled") throw illegalCancel(order.status);
          const children = (await repo.childRows(tx, order.id, true)).filter((c) => c.status !== "cancelled");
          const stuck = children.find((c) => !canMove(c.status, "cancelled"));
          if (stuck)
            throw new DomainError(
              "illegal_transition",
              `order_id: child order ${stuck.id} is ${stuck.status.toUpperCase()} and cannot be cancelled`,
              { field: "order_id" },
            );
          for (const child of children)
            await moveStatus(tx, out, child, "cancelled", input.reason, input.userId);
          await followChildren(tx, out, order.id);
        } else {
          if (!canMove(order.status, "cancelled")) throw illegalCancel(order.status);
          await moveStatus(tx, out, order, "cancelled", input.reason, input.userId);
          if (order.parentOrderId) await followChildren(tx, out, order.parentOrderId);
        }
        return view(tx, order.id);
      });
    },

    /** Hides a delivered or cancelled top-level order from the summary and default lists. */
    async archive(input: { userId: string; orderId: string; idempotencyKey: string }): Promise<OrderView> {
      const { idempotencyKey, ...request } = input;
      const claim = {
        scope: `buyer:${input.userId}`,
        key: idempotencyKey,
        requestHash: hashRequest("ArchiveOrder", request),
      };
      return mutate<OrderView>(shardOfOrder(input.orderId), claim, async (tx, out) => {
        const order = await ownedRow(tx, input.userId, input.orderId, true);
        if (order.parentOrderId) throw topLevelOnly(order.parentOrderId, "archived");
        if (!FINAL.has(order.status))
          throw new DomainError(
            "illegal_transition",
            `order_id: only DELIVERED or CANCELLED orders can be archived, this one is ${order.status.toUpperCase()}`,
            { field: "order_id" },
          );
        if (!order.archived) {
          const version = await repo.updateOrder(tx, order.id, { archived: true });
          await record(tx, out, order, version, {
            kind: "archived",
            to: order.status,
            reason: "",
            actor: input.userId,
          });
        }
        return view(tx, order.id);
      });
    },

    /**
     * Records a payment, or moves a recorded one (same provider reference) from AUTHORIZED to
     * CAPTURED or FAILED. Captured payments count as paid and may not exceed the order's total.
     */
    async recordPayment(input: {
      orderId: string;
      amountMinor: number;
      currencyCode: string;
      providerReference: string;
      status: PaymentStatus;
      idempotencyKey: string;
      /** Who asks (recorded in the history; not part of the idempotent request). */
      actor: string;
    }): Promise<OrderView> {
      const { idempotencyKey, actor, ...request } = input;
      const claim = {
        scope: `order:${input.orderId}`,
        key: idempotencyKey,
        requestHash: hashRequest("RecordPayment", request),
      };
      return mutate<OrderView>(shardOfOrder(input.orderId), claim, async (tx, out) => {
        const order = await ownedRow(tx, null, input.orderId, true);
        if (order.parentOrderId) throw topLevelOnly(order.parentOrderId, "paid");
        if (input.currencyCode !== order.currencyCode)
          throw invalidArgument("amount.currency_code", `must be the order's currency ${order.currencyCode}`);
        const prior = await repo.findPayment(tx, order.id, input.providerReference);
        if (prior && prior.amountMinor !== input.amountMinor)
          throw invalidArgument(
            "amount",
            `differs from the amount recorded for provider_reference ${input.providerReference}`,
          );
        if (prior?.status === input.status) return view(tx, order.id); // a repeat of a known state
        if (prior && prior.status !== "authorized")
          throw new DomainError(
            "illegal_transition",
            `status: the payment is ${prior.status.toUpperCase()} and cannot become ${input.status.toUpperCase()}`,
            { field: "status" },
          );
        if (!prior && order.status === "cancelled")
          throw new DomainError(
            "illegal_transition",
            "order_id: the order is cancelled and takes no new payment",
            {
              field: "order_id",
            },
          );
        const captured = input.status === "captured" ? input.amountMinor : 0;
        if (order.paidMinor + captured > order.totalMinor)
          throw new DomainError(
            "illegal_transition",
            `amount: the payment would exceed the order's unpaid total of ${order.totalMinor - order.paidMinor}`,
            { field: "amount" },
          );
        if (prior) await repo.setPaymentStatus(tx, prior.id, input.status);
        else
          await repo.insertPayment(tx, {
            id: newId("pay", parseId(order.id, "ord", "order_id").bucket),
            orderId: order.id,
            amountMinor: input.amountMinor,
            currencyCode: input.currencyCode,
            providerReference: input.providerReference,
            status: input.status,
          });
        const version = await repo.updateOrder(tx, order.id, { paidDelta: captured });
        await record(tx, out, order, version, {
          kind: "payment",
          to: order.status,
          reason: `payment ${input.providerReference} ${input.status}`,
          actor,
        });
        return view(tx, order.id);
      });
    },

    /** Refunds quantities of a top-level order's lines (a parent's: its children's lines); never more than was paid. */
    async refund(input: {
      orderId: string;
      items: { productId: string; quantity: number }[];
      reason: string;
      idempotencyKey: string;
      /** Who asks (recorded in the history; not part of the idempotent request). */
      actor: string;
    }): Promise<{ order: OrderView; refundMinor: number }> {
      const { idempotencyKey, actor, ...request } = input;
      const claim = {
        scope: `order:${input.orderId}`,
        key: idempotencyKey,
        requestHash: hashRequest("RefundOrderItems", request),
      };
      return mutate(shardOfOrder(input.orderId), claim, async (tx, out) => {
        const order = await ownedRow(tx, null, input.orderId, true);
        if (order.parentOrderId) throw topLevelOnly(order.parentOrderId, "refunded");
        const current = await view(tx, order.id);
        const children = repo.isParent(order) ? await repo.childRows(tx, order.id, true) : [];
        const lineOwner = new Map<string, string>();
        const owned = await repo.itemsOf(tx, repo.isParent(order) ? children.map((c) => c.id) : [order.id]);
        for (const [orderId, lines] of owned) for (const l of lines) lineOwner.set(l.productId, orderId);
        let amount = 0;
        for (const [i, item] of input.items.entries()) {
          const line = current.items.find((l) => l.productId === item.productId);
          const owner = lineOwner.get(item.productId);
          if (!line || !owner) throw invalidArgument(`items[${i}].product_id`, "is not a line of this order");
          if (!(await repo.refundLine(tx, owner, item.productId, item.quantity)))
            throw new DomainError(
              "illegal_transition",
              `items[${i}].quantity: only ${line.quantity - line.refundedQuantity} of ${item.productId} can still be refunded`,
              { field: `items[${i}].quantity` },
            );
          amount += line.unitPriceMinor * item.quantity;
        }
        if (order.refundedMinor + amount > order.paidMinor)
          throw new DomainError(
            "illegal_transition",
            `items: the refund of ${amount} exceeds what was paid and not yet refunded (${order.paidMinor - order.refundedMinor})`,
            { field: "items" },
          );
        const version = await repo.updateOrder(tx, order.id, { refundedDelta: amount });
        await record(tx, out, order, version, {
          kind: "refund",
          to: order.status,
          reason: input.reason,
          actor,
        });
        return { order: await view(tx, order.id), refundMinor: amount };
      });
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

function illegalCancel(status: OrderStatus): DomainError {
  return new DomainError(
    "illegal_transition",
    `order_id: an order that is ${status.toUpperCase()} cannot be cancelled`,
    { field: "order_id" },
  );
}

function topLevelOnly(parentId: string, what: string): DomainError {
  return new DomainError(
    "illegal_transition",
    `order_id: a child order is not ${what} on its own; use its parent order ${parentId}`,
    { field: "order_id" },
  );
}
