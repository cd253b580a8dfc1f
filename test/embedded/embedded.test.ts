import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { EmbeddedError, REDIS_NOT_FOUND, startEmbedded } from "../../src/embedded/index.js";
import { withPg } from "../../src/embedded/pg-client.js";
import { pings } from "../../src/embedded/redis.js";

const logger = pino({ level: "silent" });
const dirs: string[] = [];

async function tempDataDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "shop-embedded-"));
  await chmod(dir, 0o755);
  dirs.push(dir);
  return dir;
}

afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

async function currentDatabase(url: string): Promise<string | undefined> {
  return withPg(
    url,
    async (c) => (await c.query<{ db: string }>("select current_database() as db")).rows[0]?.db,
  );
}

async function ping(url: string): Promise<string> {
  const redis = new Redis(url, { maxRetriesPerRequest: 0, lazyConnect: true });
  try {
    await redis.connect();
    return await redis.ping();
  } finally {
    redis.disconnect();
  }
}

describe("startEmbedded", () => {
  it("serves one database per shard and the Redis nodes, and reuses the cluster on restart", async () => {
    const dataDir = await tempDataDir();
    const first = await startEmbedded({ dataDir, shards: 2, redisNodes: 1, logger });
    try {
      expect(first.shardUrls).toHaveLength(2);
      expect(first.redisUrls).toHaveLength(1);
      expect(await Promise.all(first.shardUrls.map(currentDatabase))).toEqual([
        "shop_shard_0",
        "shop_shard_1",
      ]);
      expect(await ping(first.redisUrls[0] ?? "")).toBe("PONG");
      await withPg(first.shardUrls[1] ?? "", (c) =>
        c.query("create table marker (v int); insert into marker values (7)"),
      );
      await expect(startEmbedded({ dataDir, shards: 2, redisNodes: 1, logger })).rejects.toThrow(/in use/);
    } finally {
      await first.stop();
    }
    const redisPort = Number(new URL(first.redisUrls[0] ?? "").port);
    expect(await pings(redisPort)).toBe(false);
    await expect(currentDatabase(first.shardUrls[0] ?? "")).rejects.toThrow();

    const second = await startEmbedded({ dataDir, shards: 3, redisNodes: 1, logger });
    try {
      expect(second.shardUrls.slice(0, 2)).toEqual(first.shardUrls); // same port and password
      expect(await currentDatabase(second.shardUrls[2] ?? "")).toBe("shop_shard_2");
      const rows = await withPg(second.shardUrls[1] ?? "", (c) =>
        c.query<{ v: number }>("select v from marker"),
      );
      expect(rows.rows).toEqual([{ v: 7 }]);
    } finally {
      await second.stop();
    }
  }, 60_000);

  it("fails with an actionable message when redis-server is not on PATH", async () => {
    const dataDir = await tempDataDir();
    const path = process.env.PATH;
    process.env.PATH = join(dataDir, "nothing-here");
    try {
      const started = startEmbedded({ dataDir, shards: 0, redisNodes: 1, logger });
      await expect(started).rejects.toThrow(EmbeddedError);
      await expect(started).rejects.toThrow(REDIS_NOT_FOUND);
    } finally {
      process.env.PATH = path;
    }
  });

  it("starts nothing when both halves are configured elsewhere", async () => {
    const none = await startEmbedded({ dataDir: await tempDataDir(), shards: 0, redisNodes: 0, logger });
    expect(none).toMatchObject({ shardUrls: [], redisUrls: [] });
    await none.stop();
  });
});
