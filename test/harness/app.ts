import { type Logger, pino } from "pino";
import { inject } from "vitest";
import { type App, type AppConfig, type CreateAppOptions, createApp } from "../../src/app.js";
import { loadConfig } from "../../src/config.js";
import { testAuthConfig } from "./auth.js";

/**
 * A full app on a free loopback port (and the native gRPC server on another: `app.server.grpcPort`),
 * on the test run's shard databases and Redis nodes.
 */
export async function startTestApp(
  overrides: Partial<AppConfig> = {},
  /** A logger to read the app's lines, and createApp's options (a span exporter). */
  extras: { logger?: Logger } & CreateAppOptions = {},
): Promise<App & { port: number }> {
  const base = loadConfig({ PORT: "0", GRPC_PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "error" });
  const { logger = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" }), ...options } = extras;
  const app = await createApp(
    {
      ...base,
      shardUrls: inject("shardUrls"),
      redisUrls: inject("redisUrls"),
      migrateOnStart: false, // the global setup migrated every shard once
      drainTimeoutMs: 2000,
      ...testAuthConfig, // clients from ./clients.ts send a matching operator token by default
      ...overrides,
    },
    logger,
    options,
  );
  return Object.assign(app, { port: app.server.port });
}

/** A unique suffix so concurrent test files never share users or keys. */
export function unique(prefix: string): string {
  return `${prefix}-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
}
