/**
 * `node --import tsx bench/scenarios/list-orders.main.ts [--smoke] [--duration 10] [--warmup 2] [--orders 1000000] [--users 50000] [--json file]`
 * Runs issue 5's scenario 5 (ListOrders at 1M orders on a shard) alone and prints its table and
 * checks, until bench/run.ts runs it. --duration scales the calls per case (40 x duration, from
 * h2load); --warmup is seconds of calls over every case before measuring. Exit 2 on a consistency violation, 3 on failed calls.
 */
import { runAlone } from "../lib/scenario.js";
import { runListOrders } from "./list-orders.js";

const positive = (name: string, v: string | boolean | undefined): number | undefined => {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!(Number.isInteger(n) && n > 0)) throw new Error(`--${name} must be a positive integer (got ${v})`);
  return n;
};

await runAlone({ orders: { type: "string" }, users: { type: "string" } }, 0, (ctx, flags) => {
  const orders = positive("orders", flags.orders);
  const users = positive("users", flags.users);
  return runListOrders(ctx, {
    ...(orders !== undefined && { orders }),
    ...(users !== undefined && { users }),
  });
});
