/** A typed sliver of `pg` (it ships no types) for the bench: a pool of plain connections. */
import { createRequire } from "node:module";

export interface PgPool {
  query<Row = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<{ rows: Row[] }>;
  end(): Promise<void>;
  on(event: "error", listener: (err: Error) => void): void;
}

const pg = createRequire(import.meta.url)("pg") as {
  Pool: new (config: { connectionString: string; max: number }) => PgPool;
};

/** A pool of `max` connections to `url`; idle-connection errors are ignored (queries see them). */
export function pgPool(url: string, max: number): PgPool {
  const pool = new pg.Pool({ connectionString: url, max });
  pool.on("error", () => undefined);
  return pool;
}
