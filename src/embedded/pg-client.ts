/**
 * A typed sliver of node-postgres (`pg`, which @mikro-orm/postgresql depends on) for maintenance
 * statements: creating databases, probing readiness. `pg` ships no types, so it is loaded through
 * createRequire and described by the few members used here.
 */
import { createRequire } from "node:module";

export interface PgClient {
  query<Row = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<{ rows: Row[] }>;
  end(): Promise<void>;
}

interface PgModule {
  Client: new (config: {
    connectionString: string;
    connectionTimeoutMillis?: number;
  }) => PgClient & {
    connect(): Promise<void>;
    on(event: "error", listener: (err: Error) => void): void;
  };
}

const pg = createRequire(import.meta.url)("pg") as PgModule;

/** Connects one client; the caller must end() it. Errors after connect are ignored (the query sees them). */
export async function connectPg(url: string, timeoutMs = 5000): Promise<PgClient> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs });
  client.on("error", () => undefined);
  await client.connect();
  return client;
}

/** Runs `fn` with a connected client and always ends it. */
export async function withPg<T>(url: string, fn: (client: PgClient) => Promise<T>): Promise<T> {
  const client = await connectPg(url);
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Double-quotes an identifier for SQL. */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** The same server and credentials, another database. */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}
