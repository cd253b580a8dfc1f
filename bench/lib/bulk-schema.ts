import type { PgClient } from "../../src/embedded/pg-client.js";

/**
 * What pg_restore does for a bulk load, for the bench's loaders: drop the primary, unique and
 * foreign keys and the indexes of some tables (saving their definitions from the catalog), load, then
 * rebuild them from those definitions, which validates every key over the loaded rows in one pass
 * instead of one check per row. CHECK and NOT NULL constraints stay on throughout. The rebuilt
 * catalog is compared with the saved one, so the loaded shard has exactly the migrated schema.
 */
export interface BulkSchema {
  tables: string[];
  /** `alter table … add constraint` for p/u keys, in the order to re-add them. */
  keys: string[];
  /** `create index …` of the indexes that back no constraint. */
  indexes: string[];
  foreignKeys: string[];
  fingerprint: string;
}

/** Every key, foreign key (from or to the tables) and index definition, one per line, sorted. */
async function fingerprint(client: PgClient, tables: string[]): Promise<string> {
  const { rows } = await client.query<{ def: string }>(
    `select c.conrelid::regclass::text || ' ' || c.conname || ' ' || pg_get_constraintdef(c.oid) as def
       from pg_constraint c
       where c.contype in ('p', 'u', 'f') and (c.conrelid::regclass::text = any($1) or c.confrelid::regclass::text = any($1))
     union all
     select indexdef from pg_indexes where schemaname = current_schema() and tablename = any($1)
     order by 1`,
    [tables],
  );
  return rows.map((r) => r.def).join("\n");
}

/** Drops the keys and indexes of `tables` (and foreign keys pointing at them) and returns how to rebuild them. */
export async function dropForBulkLoad(client: PgClient, tables: string[]): Promise<BulkSchema> {
  const before = await fingerprint(client, tables);
  const { rows: cons } = await client.query<{ tbl: string; name: string; def: string; type: string }>(
    `select c.conrelid::regclass::text as tbl, c.conname as name, pg_get_constraintdef(c.oid) as def, c.contype as type
       from pg_constraint c
       where c.contype in ('p', 'u', 'f') and (c.conrelid::regclass::text = any($1) or c.confrelid::regclass::text = any($1))
       order by c.contype, c.conname`,
    [tables],
  );
  const { rows: idx } = await client.query<{ name: string; def: string }>(
    `select i.indexname as name, i.indexdef as def from pg_indexes i
       where i.schemaname = current_schema() and i.tablename = any($1)
         and not exists (select 1 from pg_constraint c where c.conindid = (quote_ident(i.schemaname) || '.' || quote_ident(i.indexname))::regclass)
       order by 1`,
    [tables],
  );
  const add = (c: { tbl: string; name: string; def: string }) =>
    `alter table ${c.tbl} add constraint "${c.name}" ${c.def}`;
  const foreign = cons.filter((c) => c.type === "f");
  const keys = cons.filter((c) => c.type !== "f");
  for (const c of foreign) await client.query(`alter table ${c.tbl} drop constraint "${c.name}"`);
  for (const c of keys) await client.query(`alter table ${c.tbl} drop constraint "${c.name}"`);
  for (const i of idx) await client.query(`drop index "${i.name}"`);
  return {
    tables,
    keys: keys.map(add),
    indexes: idx.map((i) => i.def),
    foreignKeys: foreign.map(add),
    fingerprint: before,
  };
}

/** Rebuilds what dropForBulkLoad dropped (keys, then indexes, then foreign keys) and checks the catalog. */
export async function restoreAfterBulkLoad(client: PgClient, schema: BulkSchema): Promise<void> {
  for (const sql of [...schema.keys, ...schema.indexes, ...schema.foreignKeys]) await client.query(sql);
  const after = await fingerprint(client, schema.tables);
  if (after !== schema.fingerprint)
    throw new Error(
      `the rebuilt schema differs from the migrated one:\n${after}\n---\n${schema.fingerprint}`,
    );
}
