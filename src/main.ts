import { pino } from "pino";
import { createApp } from "./app.js";
import type { DevTokens } from "./auth/dev.js";
import { ConfigError, loadConfig, requireAuthConfigured } from "./config.js";
import { startEmbedded } from "./embedded/index.js";
import { loggerOptions } from "./observability/logging.js";

/** loadConfig -> (embedded services when no addresses are given) -> createApp -> serve; SIGTERM drains. */
async function main(): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig();
    requireAuthConfigured(config);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`configuration error: ${e.message}\n`);
      process.exit(1);
    }
    throw e;
  }
  const logger = pino(loggerOptions(config.logLevel));
  const embedded =
    config.shardUrls && config.redisUrls
      ? null
      : await startEmbedded({
          dataDir: config.dataDir,
          shards: config.shardUrls ? 0 : config.embeddedShards,
          redisNodes: config.redisUrls ? 0 : config.embeddedRedisNodes,
          logger,
        });
  const app = await createApp(
    {
      ...config,
      shardUrls: config.shardUrls ?? embedded?.shardUrls ?? [],
      redisUrls: config.redisUrls ?? embedded?.redisUrls ?? [],
    },
    logger,
  ).catch(async (e: unknown) => {
    await embedded?.stop();
    throw e;
  });
  logger.info(
    {
      port: app.server.port,
      grpcPort: app.server.grpcPort,
      services: config.services,
      shards: app.shards.shards.length,
    },
    "serving",
  );
  if (app.devTokens) printDevTokens(app.devTokens, app.server.port);

  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "draining");
    await app.shutdown();
    await embedded?.stop();
    logger.info("stopped");
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}

/** Dev mode: the tokens to call with, on stdout for copy and paste (AUTH_DEV=true only). */
function printDevTokens(tokens: DevTokens, port: number): void {
  process.stdout.write(
    [
      "",
      "dev auth (AUTH_DEV=true): NEVER USE IN PRODUCTION. Tokens below are valid for 1 hour, until restart.",
      `  operator + service (sub dev-operator): DEV_OPERATOR_TOKEN=${tokens.operator}`,
      `  buyer/seller       (sub dev-buyer):    DEV_BUYER_TOKEN=${tokens.buyer}`,
      `  e.g. buf curl --protocol grpc --http2-prior-knowledge -H "Authorization: Bearer $DEV_OPERATOR_TOKEN" http://127.0.0.1:${port}/…`,
      "",
    ].join("\n"),
  );
}

main().catch((e: unknown) => {
  // Start-up failures: say what failed without a stack trace for configuration-like problems.
  process.stderr.write(`failed to start: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
