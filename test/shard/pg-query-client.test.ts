import { createRequire } from "node:module";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { CallbackQueryClient } from "../../src/shard/pg-query-client.js";
import type { ShardSet } from "../../src/shard/shards.js";
import { openTestShards } from "../harness/shard-databases.js";

// The shard pools' pg Client (pg-query-client.ts): the promise form goes through pg's callback form;
// results, errors and pg's other call forms must be exactly pg's.
const PgCursor = createRequire(import.meta.url)("pg-cursor") as new (
  text: string,
  values?: unknown[],
) => { read(rows: number): Promise<unknown[]>; close(): Promise<void> };

let shards: ShardSet;
beforeAll(async () => {
  shards = await openTestShards(inject("shardUrls").slice(0, 1));
});
afterAll(async () => {
  await shards?.close();
});

type Client = {
  query(...args: unknown[]): unknown;
  release(): void;
};
const checkout = async (): Promise<Client> => {
  const pool = await shards.shards[0]?.orm.em.getConnection().getNativeClient();
  return (await pool?.connect()) as Client;
};

describe("CallbackQueryClient", () => {
  it("is the Client of every shard pool, so ORM statements use it", async () => {
    const client = await checkout();
    try {
      expect(client).toBeInstanceOf(CallbackQueryClient);
    } finally {
      client.release();
    }
    const rows = await shards.shards[0]?.fork().execute<{ n: number }[]>("select ?::int + 1 as n", [41]);
    expect(rows).toEqual([{ n: 42 }]);
  });

  it("resolves the promise form with pg's result and rejects it with pg's error", async () => {
    const client = await checkout();
    try {
      const res = (await client.query("select $1::text as v, 2 as n", ["x"])) as {
        rows: unknown[];
        rowCount: number;
        command: string;
      };
      expect(res).toMatchObject({ rows: [{ v: "x", n: 2 }], rowCount: 1, command: "SELECT" });
      const config = (await client.query({ text: "select 3 as n" })) as { rows: unknown[] };
      expect(config.rows).toEqual([{ n: 3 }]);
      await expect(client.query("select * from no_such_table")).rejects.toMatchObject({ code: "42P01" });
      // The connection is usable after an error.
      expect(((await client.query("select 1 as ok")) as { rows: unknown[] }).rows).toEqual([{ ok: 1 }]);
    } finally {
      client.release();
    }
  });

  it("leaves the callback form and submittables (pg-cursor) to pg", async () => {
    const client = await checkout();
    try {
      const viaCallback = await new Promise<unknown>((resolve, reject) => {
        const ret = client.query("select 4 as n", (err: Error | null, res: { rows: unknown[] }) =>
          err ? reject(err) : resolve(res.rows),
        );
        expect(ret).toBeUndefined();
      });
      expect(viaCallback).toEqual([{ n: 4 }]);
      const cursor = client.query(new PgCursor("select g from generate_series(1, 5) g")) as InstanceType<
        typeof PgCursor
      >;
      expect(await cursor.read(3)).toEqual([{ g: 1 }, { g: 2 }, { g: 3 }]);
      expect(await cursor.read(3)).toEqual([{ g: 4 }, { g: 5 }]);
      await cursor.close();
    } finally {
      client.release();
    }
  });
});
