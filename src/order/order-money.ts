import { DomainError, invalidArgument } from "../errors.js";
import { claimFor } from "../idempotency/idempotency.js";
import { newId, parseId } from "../shard/ids.js";
import type { OrderView, PaymentStatus } from "./order.model.js";
import * as repo from "./order.repository.js";
import type { OrderCore } from "./order-core.js";
import { topLevelOnly } from "./order-core.js";

/** Money on top-level orders: payment records and refunds by line quantity. */
export function createOrderMoney(core: OrderCore) {
  const { shardOfOrder, mutate, record, ownedRow, view } = core;

  return {
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
      const claim = claimFor(`order:${input.orderId}`, "RecordPayment", idempotencyKey, request);
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
      const claim = claimFor(`order:${input.orderId}`, "RefundOrderItems", idempotencyKey, request);
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
  };
}
