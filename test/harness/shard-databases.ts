/**
 * Fresh, empty shard databases on one Postgres server, for tests: each call drops and recreates
 * `${prefix}_0` .. `${prefix}_{count-1}` and returns their URLs (same server and credentials).
 */
import { pino } from "pino";
import { entities } from "../../src/app.js";
import { quoteIdent, withDatabase, withPg } from "../../src/embedded/pg-client.js";
import { openShards, type ShardSet } from "../../src/shard/shards.js";

/** The machine's local Postgres (trust auth), as on the dev machines and in CI. */
export const LOCAL_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres";

const NAME = /^[a-z_][a-z0-9_]{0,50}$/;

/** Drops (if present) and creates `count` databases; `baseUrl` is a maintenance connection (any database). */
export async function createShardDatabases(
  baseUrl: string | undefined = LOCAL_POSTGRES,
  count: number,
  prefix: string,
): Promise<string[]> {
  if (!NAME.test(prefix)) throw new Error(`shard database prefix must match ${NAME} (got "${prefix}")`);
  const names = Array.from({ length: count }, (_, i) => `${prefix}_${i}`);
  await withPg(baseUrl, async (client) => {
    for (const name of names) {
      await client.query(`drop database if exists ${quoteIdent(name)} with (force)`);
      await client.query(`create database ${quoteIdent(name)}`);
    }
  }).catch((e: unknown) => {
    const where = new URL(baseUrl);
    throw new Error(
      `test Postgres at ${where.hostname}:${where.port || 5432} refused to create databases: ` +
        `${(e as Error).message}; start it or set SHARD_URLS`,
      { cause: e },
    );
  });
  return names.map((name) => withDatabase(baseUrl, name));
}

/**
 * Drops shard databases, force-closing their connections: either the ones behind `urls` (through
 * their server's `postgres` database), or, mirroring createShardDatabases, `${prefix}_0..count-1`.
 */
export async function dropShardDatabases(urls: readonly string[]): Promise<void>;
export async function dropShardDatabases(
  baseUrl: string | undefined,
  count: number,
  prefix: string,
): Promise<void>;
export async function dropShardDatabases(
  target: readonly string[] | string | undefined,
  count = 0,
  prefix = "",
): Promise<void> {
  let adminUrl: string;
  let names: string[];
  if (Array.isArray(target)) {
    const first = target[0];
    if (first === undefined) return;
    adminUrl = withDatabase(first, "postgres");
    names = target.map((url: string) => decodeURIComponent(new URL(url).pathname.slice(1)));
  } else {
    adminUrl = (target as string | undefined) ?? LOCAL_POSTGRES;
    names = Array.from({ length: count }, (_, i) => `${prefix}_${i}`);
  }
  await withPg(adminUrl, async (client) => {
    for (const name of names) await client.query(`drop database if exists ${quoteIdent(name)} with (force)`);
  });
}

/**
 * Drops `${prefix}<pid>_<i>` databases whose pid is no longer running: what a killed test run
 * left behind. Databases of runs still alive are kept.
 */
export async function dropStaleDatabases(baseUrl: string, prefix: string): Promise<string[]> {
  return withPg(baseUrl, async (client) => {
    const { rows } = await client.query<{ datname: string }>(
      "select datname from pg_database where starts_with(datname, $1)",
      [prefix],
    );
    const stale = rows
      .map((r) => r.datname)
      .filter((name) => {
        const pid = Number(/^(\d+)_\d+$/.exec(name.slice(prefix.length))?.[1]);
        return Number.isInteger(pid) && pid > 0 && !alive(pid);
      });
    for (const name of stale) await client.query(`drop database if exists ${quoteIdent(name)} with (force)`);
    return stale;
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The product's ShardSet over `urls` (already migrated): its entities, no migrations, no logs. */
export function openTestShards(urls: string[], poolMax = 2): Promise<ShardSet> {
  return openShards({
    urls,
    entities,
    migrations: [],
    poolMax,
    bucketMap: null,
    logger: pino({ enabled: false }),
  });
}
