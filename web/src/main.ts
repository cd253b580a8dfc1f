import "./style.css";
import { reservations } from "./api.js";
import { initCheckout } from "./checkout.js";
import { byId } from "./dom.js";
import { clearError } from "./errors.js";
import { bindTokenInput, currentToken, currentUserId, randomId } from "./identity.js";
import { initOrderView } from "./order-view.js";
import { initProducts } from "./products.js";

const orderView = initOrderView();

const products = initProducts(async (product, quantity) => {
  const { reservation } = await reservations.createReservation({
    userId: currentUserId(),
    items: [{ productId: product.id, quantity }],
    idempotencyKey: randomId("reserve"),
  });
  if (!reservation) throw new Error("the server returned no reservation");
  checkout.show(reservation, new Map([[product.id, product.name]]));
  await products.reload();
});

const checkout = initCheckout((order) => {
  orderView.open(currentUserId(), order.id, order);
  void products.reload();
});

bindTokenInput(byId<HTMLInputElement>("token"), byId("user-id"), () => {
  // Another buyer: nothing of the previous one stays on screen.
  clearError();
  checkout.hide();
  orderView.close();
  void products.reload();
});

// Nothing is asked of the API before there is a token (every call would be UNAUTHENTICATED).
if (currentToken() !== "") {
  const linkedOrder = new URLSearchParams(window.location.hash.slice(1)).get("order");
  if (linkedOrder) orderView.open(currentUserId(), linkedOrder);
  void products.reload();
}
