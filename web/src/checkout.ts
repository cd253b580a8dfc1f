import type { Order } from "../../gen/shop/order/v1/order_pb.js";
import type { Reservation } from "../../gen/shop/reservation/v1/reservation_pb.js";
import { orders } from "./api.js";
import { byId, h } from "./dom.js";
import { whileBusy } from "./errors.js";
import { formatTime, isoTime, reservationStatusName } from "./format.js";
import { currentUserId, randomId } from "./identity.js";

/** The reservation shown, with the idempotency key its order is placed under. */
let pending: { reservation: Reservation; orderKey: string } | undefined;

/** The reservation panel: what is held and until when, and "Place order" from it. */
export function initCheckout(onOrderPlaced: (order: Order) => void) {
  const section = byId<HTMLElement>("checkout");
  const form = byId<HTMLFormElement>("place-order");

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const button = form.querySelector("button");
    if (!pending || !button) return;
    const { reservation, orderKey } = pending;
    const customerEmail = String(new FormData(form).get("email") ?? "").trim();
    void whileBusy(button, async () => {
      const { order } = await orders.createOrder({
        userId: currentUserId(),
        source: { case: "reservationId", value: reservation.id },
        customerEmail,
        // One key per reservation: a double click or a retry after a lost answer places one order.
        idempotencyKey: orderKey,
      });
      if (!order) throw new Error("the server returned no order");
      hide();
      onOrderPlaced(order);
    });
  });

  function hide(): void {
    pending = undefined;
    section.hidden = true;
  }

  return {
    show(reservation: Reservation, productNames: ReadonlyMap<string, string>): void {
      pending = { reservation, orderKey: randomId("order") };
      section.dataset.reservationId = reservation.id;
      byId("reservation-status").textContent = reservationStatusName(reservation.status);
      const expiry = byId<HTMLTimeElement>("reservation-expiry");
      expiry.dateTime = isoTime(reservation.expireTime);
      expiry.textContent = formatTime(reservation.expireTime);
      byId("reservation-items").replaceChildren(
        ...reservation.items.map((item) =>
          h(
            "li",
            { "data-testid": "reservation-item" },
            `${item.quantity} × ${productNames.get(item.productId) ?? item.productId} (warehouse ${item.warehouseId})`,
          ),
        ),
      );
      section.hidden = false;
    },
    hide,
  };
}
