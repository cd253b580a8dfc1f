/**
 * vitest globalSetup: the infrastructure every test file may use, started once per run.
 * - Postgres: SHARD_URLS when set (used as is, never dropped), else 3 fresh databases
 *   `shoptest_<pid>_<i>` on the local Postgres (TEST_POSTGRES_URL overrides its address).
 * - Redis: REDIS_URLS when set, else 3 redis-server processes on free ports.
 * Tests read them with `inject("shardUrls")` / `inject("redisUrls")`. A test file that needs shards
 * of its own calls createShardDatabases itself.
 */
import { pino } from "pino";
import type { TestProject } from "vitest/node";
import { entities } from "../../src/app.js";
import { migrations } from "../../src/migrations/index.js";
import { openShards } from "../../src/shard/shards.js";
import { startRedisNodes } from "./redis-nodes.js";
import {
  createShardDatabases,
  dropShardDatabases,
  dropStaleDatabases,
  LOCAL_POSTGRES,
} from "./shard-databases.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** postgres:// URL of each shard database, in shard order. */
    shardUrls: string[];
    /** redis:// URL of each node of the Redlock quorum. */
    redisUrls: string[];
  }
}

const list = (value: string | undefined): string[] | null => {
  const items = (value ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  return items.length > 0 ? items : null;
};

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const baseUrl = process.env.TEST_POSTGRES_URL ?? LOCAL_POSTGRES;
  const prefix = "shoptest_";
  const configuredShards = list(process.env.SHARD_URLS);
  const configuredRedis = list(process.env.REDIS_URLS);

  let shardUrls = configuredShards;
  if (!shardUrls) {
    await dropStaleDatabases(baseUrl, prefix).catch(() => undefined); // reported by the create below
    shardUrls = await createShardDatabases(baseUrl, 3, `${prefix}${process.pid}`);
  }
  const redis = configuredRedis
    ? null
    : await startRedisNodes(3).catch(async (e: unknown) => {
        if (!configuredShards && shardUrls) await dropShardDatabases(shardUrls).catch(() => undefined);
        throw e;
      });

  // Migrate once here: test files start apps with MIGRATE_ON_START off, so parallel files never race.
  await migrateShards(shardUrls);
  project.provide("shardUrls", shardUrls);
  project.provide("redisUrls", configuredRedis ?? redis?.urls ?? []);

  return async () => {
    await redis?.stopAll();
    if (!configuredShards && shardUrls) await dropShardDatabases(shardUrls);
  };
}

/** Applies every migration to the given shard databases (idempotent). */
export async function migrateShards(urls: string[]): Promise<void> {
  const shards = await openShards({
    urls,
    entities,
    migrations,
    poolMax: 2,
    bucketMap: null,
    logger: pino({ level: "silent" }),
  });
  try {
    await shards.migrateAll();
  } finally {
    await shards.close();
  }
}
