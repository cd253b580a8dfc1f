import { type Logger, pino } from "pino";
import { entities } from "./app.js";
import { ConfigError, loadConfig } from "./config.js";
import { startEmbedded } from "./embedded/index.js";
import { migrations } from "./migrations/index.js";
import { openShards, type ShardSet } from "./shard/shards.js";

/**
 * Runs an operator command against every configured shard (SHARD_URLS, or the embedded shards when
 * it is unset) and exits with the code `fn` returns; failures print `<what> failed: …` and exit 1.
 * Logs go to stderr so stdout carries only the command's report.
 */
export function runOperatorCommand(
  what: string,
  fn: (shards: ShardSet, logger: Logger) => Promise<number>,
): void {
  const run = async (): Promise<number> => {
    const config = loadConfig();
    const logger = pino({ level: config.logLevel }, pino.destination(2));
    const embedded = config.shardUrls
      ? null
      : await startEmbedded({
          dataDir: config.dataDir,
          shards: config.embeddedShards,
          redisNodes: 0,
          logger,
        });
    try {
      const urls = config.shardUrls ?? embedded?.shardUrls ?? [];
      const shards = await openShards({
        urls,
        entities,
        migrations,
        poolMax: 2,
        bucketMap: config.bucketMap,
        logger,
      });
      try {
        return await fn(shards, logger);
      } finally {
        await shards.close();
      }
    } finally {
      await embedded?.stop();
    }
  };
  run().then(
    (code) => process.exit(code),
    (e: unknown) => {
      const message =
        e instanceof ConfigError
          ? `configuration error: ${e.message}`
          : `${what} failed: ${e instanceof Error ? e.message : String(e)}`;
      process.stderr.write(`${message}\n`);
      process.exit(1);
    },
  );
}
