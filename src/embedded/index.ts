/**
 * The newcomer default: when no SHARD_URLS / REDIS_URLS are configured, the program starts real
 * Postgres shards and Redis nodes itself, under DATA_DIR:
 *
 *   <dataDir>/embedded.lock     pid of the process using this folder (one at a time)
 *   <dataDir>/postgres/         one cluster, one database per shard, reused across starts
 *   <dataDir>/redis/            pid files of the redis-server nodes (Redis keeps nothing on disk)
 */
import { mkdir, readFile, unlink, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Logger } from "pino";
import { startEmbeddedPostgres } from "./postgres.js";
import { commandLine, EmbeddedError, isAlive } from "./processes.js";
import { startEmbeddedRedis } from "./redis.js";

export { EmbeddedError } from "./processes.js";
export { REDIS_NOT_FOUND } from "./redis.js";

export interface EmbeddedOptions {
  /** Folder for all embedded state; created if missing. */
  dataDir: string;
  /** Postgres shard databases to provide; 0 starts no Postgres (SHARD_URLS is configured). */
  shards: number;
  /** Redis nodes to start; 0 starts no Redis (REDIS_URLS is configured). */
  redisNodes: number;
  logger: Logger;
}

export interface Embedded {
  /** postgres:// URL of each shard database, in shard order. */
  shardUrls: string[];
  /** redis:// URL of each node. */
  redisUrls: string[];
  /** Stops Redis and Postgres and releases the data folder. Safe to call twice. */
  stop(): Promise<void>;
}

/** Starts the embedded Postgres cluster and Redis nodes; on failure, stops whatever had started. */
export async function startEmbedded(opts: EmbeddedOptions): Promise<Embedded> {
  const dataDir = resolve(opts.dataDir);
  const logger = opts.logger.child({ component: "embedded" });
  if (opts.shards === 0 && opts.redisNodes === 0)
    return { shardUrls: [], redisUrls: [], stop: async () => {} };
  await mkdir(dataDir, { recursive: true });
  const releaseLock = await lockDataDir(dataDir);
  const stops: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    const errors: unknown[] = [];
    for (const stop of stops.splice(0)) await stop().catch((e: unknown) => errors.push(e));
    await releaseLock();
    if (errors.length > 0) throw new AggregateError(errors, "embedded: some children did not stop cleanly");
  };
  // allSettled, not all: when one half fails, the other must finish starting before it is stopped.
  const [pg, redis] = await Promise.allSettled([
    opts.shards > 0
      ? startEmbeddedPostgres({ dir: join(dataDir, "postgres"), shards: opts.shards, logger })
      : undefined,
    opts.redisNodes > 0
      ? startEmbeddedRedis({ dir: join(dataDir, "redis"), nodes: opts.redisNodes, logger })
      : undefined,
  ]);
  for (const r of [redis, pg]) if (r.status === "fulfilled" && r.value) stops.push(r.value.stop);
  const failed = [pg, redis].find((r) => r.status === "rejected");
  if (failed) {
    await stopAll().catch(() => undefined);
    throw failed.reason;
  }
  let stopped: Promise<void> | undefined;
  return {
    shardUrls: pg.status === "fulfilled" ? (pg.value?.urls ?? []) : [],
    redisUrls: redis.status === "fulfilled" ? (redis.value?.urls ?? []) : [],
    stop: () => (stopped ??= stopAll()),
  };
}

const inUseHere = new Set<string>();

/**
 * One process per data folder: a second `npm start` on the same DATA_DIR would otherwise take the
 * first one's Postgres for an orphan. A lock whose pid is gone (or is no longer node) is stale.
 */
async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  if (inUseHere.has(dataDir)) throw new EmbeddedError(`${dataDir} is already in use by this process`);
  inUseHere.add(dataDir);
  const file = join(dataDir, "embedded.lock");
  try {
    const pid = Number.parseInt(await readFile(file, "utf8").catch(() => ""), 10);
    const other = Number.isInteger(pid) && pid !== process.pid && isAlive(pid);
    if (other && (await commandLine(pid))?.includes("node")) {
      throw new EmbeddedError(
        `${dataDir} is in use by another process (pid ${pid}): stop it, or set DATA_DIR to another folder`,
      );
    }
    await writeFile(file, `${process.pid}\n`);
  } catch (e) {
    inUseHere.delete(dataDir);
    throw e;
  }
  return async () => {
    inUseHere.delete(dataDir);
    const owner = await readFile(file, "utf8").catch(() => "");
    if (owner.trim() === String(process.pid)) await unlink(file).catch(() => undefined);
  };
}
