import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import { OrderService } from "../../gen/shop/order/v1/order_pb.js";
import { ReservationService } from "../../gen/shop/reservation/v1/reservation_pb.js";
import { currentToken } from "./identity.js";

/** Where the API is: VITE_API_URL at build time, else the origin that served this page. */
export const apiBaseUrl = import.meta.env.VITE_API_URL || window.location.origin;

/** Every call carries the buyer's bearer token (the server answers UNAUTHENTICATED without one). */
const withToken: Interceptor = (next) => (req) => {
  const token = currentToken();
  if (token !== "") req.header.set("Authorization", `Bearer ${token}`);
  return next(req);
};

// Connect protocol over fetch, JSON: readable in the browser's network panel, and server streams
// work over HTTP/1.1.
const transport = createConnectTransport({ baseUrl: apiBaseUrl, interceptors: [withToken] });

export const inventory = createClient(InventoryService, transport);
export const reservations = createClient(ReservationService, transport);
export const orders = createClient(OrderService, transport);
