/**
 * Who may call what: ONE table, method -> rule, checked for every call of the shop services (a method
 * missing from it is refused). Rules that need only the token run before the request body is read;
 * rules about a request's user, seller or product run on the parsed request, before the handler.
 * The table is documented in docs/auth.md; test/auth checks every served method has an entry.
 */
import { DomainError } from "../errors.js";
import type { Principal } from "./principal.js";

/** Another user's object: NOT_FOUND with the service's own words, so it cannot be told from a missing one. */
interface Hidden {
  field: string;
  noun: string;
}

/** What a call needs beyond a valid token. */
export type Rule =
  /** Any authenticated caller. */
  | { kind: "any" }
  /** The operator scope. */
  | { kind: "operator" }
  /** The service or operator scope (a service-to-service caller). */
  | { kind: "service" }
  /**
   * A buyer's own objects, named by the request's `user_id`: empty means the caller's own (for a plain
   * user); another user's is NOT_FOUND (`hidden`) or PERMISSION_DENIED. Service and operator callers
   * may name any user.
   */
  | { kind: "buyer"; hidden?: Hidden }
  /** ListOrders: a buyer's list by `user_id`, or with it empty the cross-shard list (operator only). */
  | { kind: "buyer_or_all" }
  /** CreateProduct: `seller_id` is the caller's (empty means the caller's) unless service or operator. */
  | { kind: "seller" }
  /** The product named by `product_id` must be the caller's (its seller) unless operator. */
  | { kind: "product_owner" };

const any: Rule = { kind: "any" };
const operator: Rule = { kind: "operator" };
const service: Rule = { kind: "service" };
const ownList: Rule = { kind: "buyer" };
const ownReservation: Rule = { kind: "buyer", hidden: { field: "reservation_id", noun: "reservation" } };
const ownOrder: Rule = { kind: "buyer", hidden: { field: "order_id", noun: "order" } };
const productOwner: Rule = { kind: "product_owner" };

const INV = "shop.inventory.v1.InventoryService";
const RES = "shop.reservation.v1.ReservationService";
const ORD = "shop.order.v1.OrderService";

/** Method (`package.Service/Method`) -> rule. */
export const ACCESS: Readonly<Record<string, Rule>> = {
  [`${INV}/CreateProduct`]: { kind: "seller" },
  [`${INV}/GetProduct`]: any,
  [`${INV}/UpdateProduct`]: productOwner,
  [`${INV}/ListProducts`]: any,
  [`${INV}/AdjustStock`]: productOwner,
  [`${INV}/GetAvailability`]: any,
  [`${INV}/ListStockMovements`]: productOwner,
  [`${INV}/CheckStockInvariant`]: operator,

  [`${RES}/CreateReservation`]: ownList,
  [`${RES}/GetReservation`]: ownReservation,
  [`${RES}/ListReservations`]: ownList,
  [`${RES}/ReleaseReservation`]: ownReservation,
  [`${RES}/ExtendReservation`]: ownReservation,

  [`${ORD}/CreateOrder`]: ownList,
  [`${ORD}/GetOrder`]: ownOrder,
  [`${ORD}/ListOrders`]: { kind: "buyer_or_all" },
  [`${ORD}/UpdateOrderStatus`]: service,
  [`${ORD}/CancelOrder`]: ownOrder,
  [`${ORD}/ArchiveOrder`]: ownOrder,
  [`${ORD}/RecordPayment`]: service,
  [`${ORD}/RefundOrderItems`]: service,
  [`${ORD}/GetOrderHistory`]: ownOrder,
  [`${ORD}/ListTopCustomers`]: operator,
  [`${ORD}/WatchOrder`]: ownOrder,
  [`${ORD}/WatchOrders`]: { kind: "buyer", hidden: { field: "user_id", noun: "orders for this user" } },
};

/** The rule of a method; undefined means the method is not in the table (and is refused). */
export function ruleFor(method: string): Rule | undefined {
  return Object.hasOwn(ACCESS, method) ? ACCESS[method] : undefined;
}

/** What the request-level checks may look up. */
export interface AccessDeps {
  /** The seller of a product (throws not_found / invalid_argument like GetProduct). */
  sellerOf(productId: string): Promise<string>;
}

/** The part of a rule decided by the token alone; runs before the body is read. */
export function checkCaller(rule: Rule | undefined, p: Principal): void {
  if (rule === undefined) throw denied("this call is not open to any caller");
  if (rule.kind === "operator" && !p.operator) throw denied("needs the operator scope");
  if (rule.kind === "service" && !p.operator && !p.service)
    throw denied("needs the service or operator scope");
}

/** The part of a rule about the request's user, seller or product; may fill in the caller's own id. */
export async function checkRequest(
  rule: Rule,
  p: Principal,
  req: Record<string, unknown>,
  deps: AccessDeps,
): Promise<void> {
  switch (rule.kind) {
    case "buyer":
      if (p.operator || p.service) return;
      if (req.userId === "") req.userId = p.subject;
      if (req.userId !== p.subject) {
        const h = rule.hidden;
        if (h) throw new DomainError("not_found", `${h.field}: no such ${h.noun}`, { field: h.field });
        throw denied("user_id: may only name the caller's own user id", "user_id");
      }
      return;
    case "buyer_or_all":
      if (p.operator) return;
      if (req.userId === "")
        throw denied("user_id: listing every user's orders needs the operator scope", "user_id");
      if (!p.service && req.userId !== p.subject)
        throw denied("user_id: may only name the caller's own user id", "user_id");
      return;
    case "seller":
      if (p.operator || p.service) return;
      if (req.sellerId === "") req.sellerId = p.subject;
      if (req.sellerId !== p.subject)
        throw denied("seller_id: may only name the caller's own user id", "seller_id");
      return;
    case "product_owner":
      if (p.operator) return;
      if ((await deps.sellerOf(String(req.productId))) !== p.subject)
        throw denied("product_id: only the product's seller or an operator may do this", "product_id");
      return;
    default:
      return;
  }
}

function denied(message: string, field?: string): DomainError {
  return new DomainError("permission_denied", message, field === undefined ? {} : { field });
}
