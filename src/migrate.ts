import { pino } from "pino";
import { entities } from "./app.js";
import { ConfigError, loadConfig } from "./config.js";
import { startEmbedded } from "./embedded/index.js";
import { migrations } from "./migrations/index.js";
import { openShards } from "./shard/shards.js";

/** `npm run migrate`: applies pending migrations on every shard (the embedded ones when no SHARD_URLS). */
async function migrate(): Promise<void> {
  const config = loadConfig();
  const logger = pino({ level: config.logLevel });
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
      await shards.migrateAll();
    } finally {
      await shards.close();
    }
  } finally {
    await embedded?.stop();
  }
}

migrate().catch((e: unknown) => {
  const message =
    e instanceof ConfigError
      ? `configuration error: ${e.message}`
      : `migration failed: ${e instanceof Error ? e.message : String(e)}`;
  process.stderr.write(`${message}\n`);
  process.exit(1);
});
