import { pino } from "pino";
import { entities } from "./app.js";
import { ConfigError, loadConfig } from "./config.js";
import { startEmbedded } from "./embedded/index.js";
import { checkShardStock } from "./inventory/inventory.queries.js";
import { migrations } from "./migrations/index.js";
import { openShards } from "./shard/shards.js";

/**
 * `npm run check-stock`: checks the stock invariant on every shard (the embedded ones when no
 * SHARD_URLS), prints one line per violation and a summary on stdout. Exit code 0 when the invariant
 * holds everywhere, 2 when something is violated, 1 when the check could not run.
 */
async function checkStock(): Promise<number> {
  const config = loadConfig();
  // Logs go to stderr: stdout carries only the report.
  const logger = pino({ level: config.logLevel }, pino.destination(2));
  const embedded = config.shardUrls
    ? null
    : await startEmbedded({ dataDir: config.dataDir, shards: config.embeddedShards, redisNodes: 0, logger });
  try {
    const shards = await openShards({
      urls: config.shardUrls ?? embedded?.shardUrls ?? [],
      entities,
      migrations,
      poolMax: 2,
      bucketMap: config.bucketMap,
      logger,
    });
    try {
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
      }
      const shardCount = shards.shards.length;
      process.stdout.write(
        violations === 0
          ? `ok: ${checked} stock rows on ${shardCount} shards, no violations\n`
          : `FAILED: ${violations} violations in ${checked} stock rows on ${shardCount} shards\n`,
      );
      return violations === 0 ? 0 : 2;
    } finally {
      await shards.close();
    }
  } finally {
    await embedded?.stop();
  }
}

checkStock().then(
  (code) => process.exit(code),
  (e: unknown) => {
    const message =
      e instanceof ConfigError
        ? `configuration error: ${e.message}`
        : `stock check failed: ${e instanceof Error ? e.message : String(e)}`;
    process.stderr.write(`${message}\n`);
    process.exit(1);
  },
);
