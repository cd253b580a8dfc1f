import { checkShardStock } from "./inventory/inventory.queries.js";
import { runOperatorCommand } from "./operator.js";
import { checkOrders } from "./order/order-check.js";

/**
 * `npm run check-stock`: checks the stock invariant and the order bookkeeping (totals = sum of
 * lines, paid = captured payments, refunded = refunded lines, one history row per version) on every
 * shard (the embedded ones when no SHARD_URLS), prints one line per violation and a summary on stdout. Exit code 0 when the invariant
 * holds everywhere, 2 when something is violated, 1 when the check could not run.
 */
runOperatorCommand("stock check", async (shards) => {
  let checked = 0;
  let violations = 0;
  for (const shard of shards.shards) {
    const result = await checkShardStock(shard.fork(), shard.index).catch((e: unknown) => {
      throw new Error(`shard ${shard.index}: ${e instanceof Error ? e.message : String(e)}`, {
        cause: e,
      });
    });
    checked += result.checked;
    violations += result.violations.length;
    for (const v of result.violations) {
      process.stdout.write(
        `violation shard=${v.shard} product=${v.productId} warehouse=${v.warehouseId} rule=${v.rule}: ${v.detail}\n`,
      );
    }
    const orders = await checkOrders(shard.fork());
    violations += orders.length;
    for (const v of orders)
      process.stdout.write(`violation shard=${shard.index} order=${v.orderId}: ${v.problem}\n`);
  }
  const shardCount = shards.shards.length;
  process.stdout.write(
    violations === 0
      ? `ok: ${checked} stock rows and every order on ${shardCount} shards, no violations\n`
      : `FAILED: ${violations} violations (${checked} stock rows and every order on ${shardCount} shards)\n`,
  );
  return violations === 0 ? 0 : 2;
});
