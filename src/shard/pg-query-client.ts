/**
 * The `pg` Client every shard pool makes (MikroORM's pool, through `driverOptions.Client`): pg's own
 * Client with one change. A query without a callback (the promise form, which is how kysely and so
 * MikroORM call it) is sent in the callback form and its promise made here.
 *
 * Why: in pg 8.23 the promise form builds the Query without a callback and assigns one afterwards.
 * Measured on Node 20 and 24 alike, every such query's rows then survive V8's minor GCs until the
 * next full GC: with ListOrders, about 8 MB promoted per scavenge and scavenges of 10-50 ms, where
 * the callback form promotes nothing and scavenges take under 2 ms. A Query made with its callback,
 * as here, is collected young. `npm run bench:gc` (bench/gc-survival.ts) shows both. Errors, results and
 * the pool's checkout are exactly pg's; only the stack of a rejected query no longer points at the
 * caller (pg re-captured it there), and our errors never show stacks to callers anyway.
 */
import { createRequire } from "node:module";

type Callback = (err: Error | null, res: unknown) => void;

interface ClientLike {
  query(config: unknown, values?: unknown, callback?: unknown): unknown;
}

const pg = createRequire(import.meta.url)("pg") as {
  Client: new (config: object) => ClientLike;
};

/** True when pg itself takes this call's callback (or the query object reports its own result). */
function hasCallback(config: unknown, values: unknown, callback: unknown): boolean {
  if (typeof values === "function" || typeof callback === "function") return true;
  if (typeof config !== "object" || config === null) return false;
  const c = config as { submit?: unknown; callback?: unknown };
  // A Submittable (pg-cursor, pg-query-stream) is returned as is; a config object may bring its own callback.
  return typeof c.submit === "function" || typeof c.callback === "function";
}

export class CallbackQueryClient extends pg.Client {
  override query(config: unknown, values?: unknown, callback?: unknown): unknown {
    if (hasCallback(config, values, callback)) return super.query(config, values, callback);
    return new Promise((resolve, reject) => {
      const done: Callback = (err, res) => (err ? reject(err) : resolve(res));
      super.query(config, values, done);
    });
  }
}
