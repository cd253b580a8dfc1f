import type { EntitySchema, MigrationObject } from "@mikro-orm/core";
import { Migrator } from "@mikro-orm/migrations";
import { type EntityManager, MikroORM } from "@mikro-orm/postgresql";
import type { Logger } from "pino";
import { DomainError } from "../errors.js";
import { type IdKind, parseId } from "./ids.js";
import { type BucketMap, bucketOfUser, contiguousBucketMap, parseBucketMap } from "./router.js";

/** One physical shard: a Postgres database with its own MikroORM instance and pool. */
export interface Shard {
  readonly index: number;
  readonly orm: MikroORM;
  /** A fresh EntityManager for one operation; never share one across requests. */
  fork(): EntityManager;
  /** How many SQL statements this shard has sent since it opened (monotonic; for tests and metrics). */
  queryCount(): number;
}

/** Every shard, and the router that picks one for a user id or an entity id. */
export interface ShardSet {
  readonly shards: readonly Shard[];
  readonly bucketMap: BucketMap;
  /** The shard holding the user's rows (a buyer's orders, a seller's products). */
  forUser(userId: string): Shard;
  /** The shard holding the entity; INVALID_ARGUMENT naming `field` when the id is malformed. */
  forId(id: string, kind: IdKind, field: string): Shard;
  /** The shard of a logical bucket. */
  forBucket(bucket: number): Shard;
  /** Applies pending migrations on every shard (idempotent). */
  migrateAll(): Promise<void>;
  /** True per shard when it answers a trivial query. */
  ping(): Promise<boolean[]>;
  close(): Promise<void>;
}

export interface OpenShardsOptions {
  urls: readonly string[];
  entities: EntitySchema[];
  migrations: MigrationObject[];
  poolMax: number;
  bucketMap: string | null;
  logger: Logger;
}

/** Opens one MikroORM per shard URL. Connections are made lazily by the pools. */
export async function openShards(options: OpenShardsOptions): Promise<ShardSet> {
  const bucketMap = options.bucketMap
    ? parseBucketMap(options.bucketMap, options.urls.length)
    : contiguousBucketMap(options.urls.length);
  const shards: Shard[] = [];
  try {
    for (const [index, url] of options.urls.entries()) {
      let statements = 0;
      const orm = await MikroORM.init({
        clientUrl: url,
        contextName: `shard-${index}`,
        entities: options.entities,
        allowGlobalContext: false,
        pool: { min: 0, max: options.poolMax, idleTimeoutMillis: 30_000 },
        extensions: [Migrator],
        migrations: {
          migrationsList: options.migrations,
          tableName: "mikro_orm_migrations",
          transactional: true,
          allOrNothing: true,
          snapshot: false,
        },
        debug: false,
        // A typo in SHARD_URLS must fail, not quietly create an empty database.
        ensureDatabase: false,
        logger: (message: string) => options.logger.debug({ shard: index }, message),
        // Every statement sent through MikroORM (em.execute, entity queries) passes here once;
        // transaction control (begin/commit/rollback) does not.
        onQuery: (sql: string) => {
          statements++;
          return sql;
        },
      });
      shards.push({ index, orm, fork: () => orm.em.fork(), queryCount: () => statements });
    }
  } catch (e) {
    await Promise.allSettled(shards.map((s) => s.orm.close(true)));
    throw e;
  }
  const byBucket = (bucket: number): Shard => shards[bucketMap.shardOf(bucket)] as Shard;
  return {
    shards,
    bucketMap,
    forUser: (userId) => byBucket(bucketOfUser(userId)),
    forId: (id, kind, field) => byBucket(parseId(id, kind, field).bucket),
    forBucket: byBucket,
    async migrateAll() {
      for (const shard of shards) {
        const applied = await shard.orm.migrator.up();
        options.logger.info(
          { shard: shard.index, applied: applied.map((m) => m.name) },
          "migrations applied",
        );
      }
    },
    ping: () =>
      Promise.all(
        shards.map((s) =>
          s
            .fork()
            .execute("select 1")
            .then(() => true)
            .catch(() => false),
        ),
      ),
    async close() {
      await Promise.allSettled(shards.map((s) => s.orm.close(true)));
    },
  };
}

/** Wraps the failure of one shard among several, so a caller sees which part failed without host names. */
export function shardUnavailable(index: number, cause: unknown): DomainError {
  return new DomainError("shard_unavailable", `shard ${index} is unavailable, retry later`, { cause });
}
