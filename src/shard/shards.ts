import type { EntitySchema, MigrationObject } from "@mikro-orm/core";
import { Migrator } from "@mikro-orm/migrations";
import { type EntityManager, MikroORM } from "@mikro-orm/postgresql";
import type { Logger } from "pino";
import { DomainError } from "../errors.js";
import { remainingMs } from "./deadline.js";
import { type IdKind, parseId } from "./ids.js";
import { CallbackQueryClient } from "./pg-query-client.js";
import { type BucketMap, bucketOfUser, contiguousBucketMap, parseBucketMap } from "./router.js";

/** One physical shard: a Postgres database with its own MikroORM instance and pool. */
export interface Shard {
  readonly index: number;
  readonly orm: MikroORM;
  /** A fresh EntityManager for one operation; never share one across requests. */
  fork(): EntityManager;
  /** How many SQL statements this shard has sent since it opened (monotonic; for tests and metrics). */
  queryCount(): number;
  /** This process's connections to the shard, from its `pg` pool (for metrics). */
  pool(): PoolStats;
  /**
   * One statement (`$1` placeholders) straight on the shard's `pg` pool, past the ORM, in its own
   * implicit transaction: for the few hot paths where one round trip is the whole job (a
   * reservation is one function call). Counted and traced like every other statement.
   */
  sql<T>(text: string, params: unknown[]): Promise<T[]>;
}

/** Connection counts of a shard's pool. */
export interface PoolStats {
  /** Open connections, busy and idle. */
  total: number;
  idle: number;
  /** Queries waiting for a connection (the pool is at `max` and every connection is busy). */
  waiting: number;
  max: number;
}

/** Wraps every SQL statement a shard sends (tracing); `sql` has placeholders, never the values. */
export type QueryTracer = <T>(shard: number, sql: string, run: () => Promise<T>) => Promise<T>;

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
  /**
   * The longest any statement may run (the server's maximum deadline): a cap set on every pooled
   * connection. Inside a call, transactions get the call's own time left instead (deadline.ts).
   */
  statementTimeoutMs?: number;
  /** Wraps each statement (tracing); unset, statements run as they are. */
  traceQuery?: QueryTracer;
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
        driverOptions: {
          // pg's Client, but ORM statements' rows die young (pg-query-client.ts).
          Client: CallbackQueryClient,
          // pg sets it on each new connection: no statement outlives the longest deadline a call may have.
          ...(options.statementTimeoutMs ? { statement_timeout: options.statementTimeoutMs } : {}),
        },
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
      const fork = (): EntityManager => {
        const em = orm.em.fork();
        // The caller's deadline carried into SQL: each transaction of a fork made during a call starts
        // with `set_config('statement_timeout', <time left>, true)`, so a write cannot wait on a lock
        // and commit after the caller was told DEADLINE_EXCEEDED. (MikroORM's setSessionContext would
        // do the same, but also wrap every plain read in BEGIN/COMMIT: three more round trips each.)
        // Plain reads are bounded by the connection-wide cap (statementTimeoutMs).
        if (remainingMs() === undefined) return em;
        const transactional = em.transactional.bind(em) as (
          cb: (tx: EntityManager) => Promise<unknown>,
          opts?: object,
        ) => Promise<unknown>;
        (em as { transactional: unknown }).transactional = (
          cb: (tx: EntityManager) => Promise<unknown>,
          opts?: object,
        ) =>
          transactional(async (tx) => {
            const left = remainingMs();
            if (left !== undefined)
              await tx.execute("select set_config('statement_timeout', ?, true)", [String(left)]);
            return cb(tx);
          }, opts);
        return em;
      };
      const connection = orm.em.getConnection();
      // MikroORM 7 runs `pg` under kysely; the Pool exposes its counts (totalCount, idleCount, waitingCount).
      const pg = await connection.getNativeClient();
      if (options.traceQuery) traceStatements(connection, index, options.traceQuery);
      const pool = (): PoolStats => ({
        total: pg.totalCount,
        idle: pg.idleCount,
        waiting: pg.waitingCount,
        max: options.poolMax,
      });
      const sql = <T>(text: string, params: unknown[]): Promise<T[]> => {
        statements++;
        const run = async () => (await pg.query(text, params)).rows as T[];
        return options.traceQuery ? options.traceQuery(index, text, run) : run();
      };
      shards.push({ index, orm, fork, queryCount: () => statements, pool, sql });
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

/** What `traceStatements` replaces: Connection#executeQuery, protected in MikroORM's typings. */
type ExecuteQuery = <T>(sql: string, run: () => Promise<T>, context?: { query?: unknown }) => Promise<T>;

/**
 * Puts `trace` around every statement of the connection. MikroORM has no public hook that spans a
 * statement (onQuery runs before it, the query logger after it), so its one choke point,
 * `executeQuery` (em.execute, entity loads, flushes, query builders; not BEGIN/COMMIT), is wrapped on
 * this instance. The traced text is the statement with its `?` placeholders (`context.query`), never
 * the formatted one with the values inlined.
 */
function traceStatements(connection: object, shard: number, trace: QueryTracer): void {
  const target = connection as { executeQuery: ExecuteQuery };
  const original = target.executeQuery.bind(connection) as ExecuteQuery;
  target.executeQuery = (sql, run, context) => {
    const text = typeof context?.query === "string" ? context.query : "";
    return trace(shard, text, () => original(sql, run, context));
  };
}

/** Wraps the failure of one shard among several, so a caller sees which part failed without host names. */
export function shardUnavailable(index: number, cause: unknown): DomainError {
  return new DomainError("shard_unavailable", `shard ${index} is unavailable, retry later`, { cause });
}
