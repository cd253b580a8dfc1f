/**
 * The streams scenario's traffic: orders created through the API, who watches which of them, and
 * the status changes at a bounded rate, each timed from just before it is sent until its answer.
 */
import type { ClientHttp2Session } from "node:http2";
import { setTimeout as delay } from "node:timers/promises";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  CreateOrderRequestSchema,
  CreateOrderResponseSchema,
  OrderStatus,
  UpdateOrderStatusRequestSchema,
  UpdateOrderStatusResponseSchema,
} from "../../gen/shop/order/v1/order_pb.js";
import { userToken } from "../../test/harness/auth.js";
import { frame, unary } from "../lib/h2-grpc.js";
import type { Pair } from "../lib/seed.js";
import type { Change } from "./streams-deliveries.js";
import type { WatchTarget } from "./streams-watch.js";

const ORD = "/shop.order.v1.OrderService";
/** The moves every order can make after PENDING, in order (TRANSITIONS in src/order/order.model.ts). */
const STEPS = [OrderStatus.CONFIRMED, OrderStatus.PROCESSING, OrderStatus.SHIPPED, OrderStatus.DELIVERED];
/** Of the watchers, this share use WatchOrders (a user's stream); the rest WatchOrder on one order. */
export const USER_SHARE = 0.1;
/** Every 4th change goes through instance B, the rest through A. */
export const VIA_B_EVERY = 4;

export interface SeededOrder {
  id: string;
  buyer: string;
}

/** One order per product, from items, each for the product's buyer (16 calls in flight). */
export async function seedOrders(
  session: ClientHttp2Session,
  bearer: string,
  pairs: Pair[],
): Promise<SeededOrder[]> {
  const out: SeededOrder[] = [];
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < pairs.length; i = next++) {
      const { buyer, product } = pairs[i] as Pair;
      const req = create(CreateOrderRequestSchema, {
        userId: buyer,
        source: { case: "items", value: { items: [{ productId: product, quantity: 1n }] } },
        customerEmail: "bench@example.com",
        idempotencyKey: `bench-streams-${process.pid}-${i}`,
      });
      const body = frame(toBinary(CreateOrderRequestSchema, req));
      const r = await unary(session, `${ORD}/CreateOrder`, bearer, body, CreateOrderResponseSchema);
      if (!r.res?.order) throw new Error(`CreateOrder failed: ${r.error}`);
      out[i] = { id: r.res.order.id, buyer };
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  return out;
}

/**
 * Who watches what: (1 - USER_SHARE) of the watchers on single orders, in pairs (one on A, one on B)
 * round-robin over the orders, so each order has as many watchers on A as on B; the rest on users'
 * streams the same way. Browser tabs use the buyer's own token; one order watcher in four is a
 * backend service watching for the buyer with a service token.
 */
export function targets(orders: SeededOrder[], total: number, service: string): WatchTarget[] {
  const users = new Map<string, string[]>();
  for (const o of orders) users.set(o.buyer, [...(users.get(o.buyer) ?? []), o.id]);
  const buyerToken = new Map([...users.keys()].map((u) => [u, userToken(u)]));
  const userList = [...users];
  const forUsers = Math.round(total * USER_SHARE);
  const out: WatchTarget[] = [];
  for (let k = 0; k < total - forUsers; k++) {
    const o = orders[Math.floor(k / 2) % orders.length] as SeededOrder;
    const instance = (k % 2) as 0 | 1;
    const bearer = k % 8 >= 6 ? service : (buyerToken.get(o.buyer) as string);
    out.push({ instance, scope: "order", userId: o.buyer, orders: [o.id], bearer });
  }
  for (let k = 0; k < forUsers; k++) {
    const [userId, ids] = userList[Math.floor(k / 2) % userList.length] as [string, string[]];
    const instance = (k % 2) as 0 | 1;
    out.push({ instance, scope: "user", userId, orders: ids, bearer: buyerToken.get(userId) as string });
  }
  return out;
}

/**
 * `count` status changes at `rate` per second, round-robin over the orders (each order moves one
 * step per round, at most STEPS.length rounds), every VIA_B_EVERY-th through B; the first `warmup`
 * are marked as warm-up. A change waits for the previous one of its order.
 */
export async function drive(
  drivers: ClientHttp2Session[],
  bearer: string,
  orders: SeededOrder[],
  count: number,
  rate: number,
  warmup: number,
): Promise<Change[]> {
  const plan = Array.from({ length: Math.min(count, orders.length * STEPS.length) }, (_, i) => ({
    order: orders[i % orders.length] as SeededOrder,
    step: Math.floor(i / orders.length),
    instance: (i % VIA_B_EVERY === VIA_B_EVERY - 1 ? 1 : 0) as 0 | 1,
  }));
  const version = new Map(orders.map((o) => [o.id, 1]));
  const previous = new Map<string, Promise<unknown>>();
  const changes: Change[] = [];
  const t0 = performance.now();
  const calls: Promise<unknown>[] = [];
  for (const [i, p] of plan.entries()) {
    const wait = t0 + (i * 1000) / rate - performance.now();
    if (wait > 0) await delay(wait);
    const call = (previous.get(p.order.id) ?? Promise.resolve()).then(async () => {
      const req = create(UpdateOrderStatusRequestSchema, {
        orderId: p.order.id,
        status: STEPS[p.step],
        expectedVersion: BigInt(version.get(p.order.id) as number),
        reason: "bench",
        idempotencyKey: `bench-streams-${process.pid}-c${i}`,
      });
      const body = frame(toBinary(UpdateOrderStatusRequestSchema, req));
      const session = drivers[p.instance] as ClientHttp2Session;
      const r = await unary(
        session,
        `${ORD}/UpdateOrderStatus`,
        bearer,
        body,
        UpdateOrderStatusResponseSchema,
      );
      const v = Number(r.res?.order?.version ?? 0);
      if (r.error === null) version.set(p.order.id, v);
      changes.push({
        orderId: p.order.id,
        version: v,
        instance: p.instance,
        warmup: i < warmup,
        sentAt: r.sentAt,
        answeredAt: r.answeredAt,
        error: r.error,
      });
    });
    previous.set(p.order.id, call);
    calls.push(call);
  }
  await Promise.all(calls);
  return changes;
}
