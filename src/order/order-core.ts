import type { EntityManager } from "@mikro-orm/postgresql";
import { DomainError } from "../errors.js";
import { claimKey, completeKey, type IdempotencyClaim, inFlight } from "../idempotency/idempotency.js";
import type { Shard } from "../shard/shards.js";
import {
  canMove,
  type EventKind,
  type OrderEventView,
  type OrderStatus,
  type OrderView,
  parentStatus,
  SYSTEM_ACTOR,
} from "./order.model.js";
import * as repo from "./order.repository.js";
import type { OrderDeps } from "./order.service.js";
import { appendEvent } from "./order-events.repository.js";
import type { OrderStock } from "./order-stock.js";

/** What a mutating transaction produced: the answer, and the history rows to publish after commit. */
export interface Mutation<T> {
  result: T;
  events: OrderEventView[];
  /** Orders whose stock must be returned after commit (they were just cancelled). */
  returning: repo.OrderRow[];
}

const notFound = () => new DomainError("not_found", "order_id: no such order", { field: "order_id" });

/**
 * The machinery every order change shares: one idempotent transaction per change with its history
 * rows, publishing after commit, the status table applied to one order, and parents following
 * their children.
 */
export function createOrderCore(deps: OrderDeps, stock: OrderStock) {
  const { shards } = deps;
  const { returnStock } = stock;
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

  /** The buyer's order or NOT_FOUND (also for another user's: no existence leak). */
  async function ownedRow(em: EntityManager, userId: string | null, id: string, lock = false) {
    const o = await repo.findOrderRow(em, id, lock);
    if (!o || (userId !== null && o.userId !== userId)) throw notFound();
    return o;
  }

  async function view(em: EntityManager, id: string): Promise<OrderView> {
    return (await repo.loadOrder(em, id)) as OrderView;
  }

  return { shardOfOrder, mutate, record, moveStatus, followChildren, ownedRow, view };
}

export type OrderCore = ReturnType<typeof createOrderCore>;

export function illegalCancel(status: OrderStatus): DomainError {
  return new DomainError(
    "illegal_transition",
    `order_id: an order that is ${status.toUpperCase()} cannot be cancelled`,
    { field: "order_id" },
  );
}

export function topLevelOnly(parentId: string, what: string): DomainError {
  return new DomainError(
    "illegal_transition",
    `order_id: a child order is not ${what} on its own; use its parent order ${parentId}`,
    { field: "order_id" },
  );
}
