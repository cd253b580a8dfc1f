import { DomainError } from "../errors.js";
import { claimFor } from "../idempotency/idempotency.js";
import { canMove, FINAL, type OrderStatus, type OrderView } from "./order.model.js";
import * as repo from "./order.repository.js";
import type { OrderCore } from "./order-core.js";
import { illegalCancel, topLevelOnly } from "./order-core.js";

/** Status changes: UpdateOrderStatus, CancelOrder and ArchiveOrder, all through the one table. */
export function createOrderStatus(core: OrderCore) {
  const { shardOfOrder, mutate, record, moveStatus, followChildren, ownedRow, view } = core;

  return {
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
      const claim = claimFor(`order:${input.orderId}`, "UpdateOrderStatus", idempotencyKey, request);
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
      const claim = claimFor(`buyer:${input.userId}`, "CancelOrder", idempotencyKey, request);
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
      const claim = claimFor(`buyer:${input.userId}`, "ArchiveOrder", idempotencyKey, request);
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
  };
}
