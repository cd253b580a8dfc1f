import { createHash } from "node:crypto";
import type { EntityManager } from "@mikro-orm/postgresql";
import { invalidArgument } from "../errors.js";

/** What identifies one logical request: who it is for, the caller's key, and what was asked. */
export interface IdempotencyClaim {
  /** Whose key space this is (e.g. `seller:<id>`); keys of different scopes never collide. */
  scope: string;
  key: string;
  /** Hash of the method and the request without its key: a replay must match it exactly. */
  requestHash: string;
}

/** Hashes a method name and a plain request object (canonical JSON with sorted keys). */
export function hashRequest(method: string, request: unknown): string {
  return createHash("sha256").update(method).update("\n").update(canonicalJson(request)).digest("base64url");
}

/**
 * Runs `work` in one transaction on the shard of `em`, at most once per (scope, key).
 *
 * The record is inserted first, in the same transaction as the effect. A concurrent replay's insert
 * blocks on the unique key until the first transaction ends: if it committed, the replay reads and
 * returns the first answer; if it rolled back (the work failed), the replay does the work itself. So
 * there is never a second effect, and a failed request leaves nothing behind. A key reused with a
 * different request is INVALID_ARGUMENT.
 */
export async function runIdempotent<T>(
  em: EntityManager,
  claim: IdempotencyClaim,
  work: (tx: EntityManager) => Promise<T>,
): Promise<T> {
  return em.transactional(async (tx) => {
    const inserted = await tx.execute(
      `insert into idempotency_records (scope, key, request_hash, response) values (?, ?, ?, 'null'::jsonb)
       on conflict (scope, key) do nothing returning 1 as ok`,
      [claim.scope, claim.key, claim.requestHash],
    );
    if (inserted.length === 0) {
      const rows = await tx.execute<{ request_hash: string; response: unknown }[]>(
        "select request_hash, response from idempotency_records where scope = ? and key = ?",
        [claim.scope, claim.key],
      );
      const row = rows[0];
      if (!row || row.request_hash !== claim.requestHash) {
        throw invalidArgument("idempotency_key", "was already used with a different request");
      }
      return reviveJson(row.response) as T;
    }
    const result = await work(tx);
    await tx.execute("update idempotency_records set response = ?::jsonb where scope = ? and key = ?", [
      JSON.stringify(result, dateReplacer),
      claim.scope,
      claim.key,
    ]);
    return result;
  });
}

function dateReplacer(this: Record<string, unknown>, key: string, value: unknown): unknown {
  const raw = this[key];
  return raw instanceof Date ? { $date: raw.toISOString() } : value;
}

function reviveJson(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(reviveJson);
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value);
    if (entries.length === 1 && entries[0]?.[0] === "$date") return new Date(String(entries[0][1]));
    return Object.fromEntries(entries.map(([k, v]) => [k, reviveJson(v)]));
  }
  return value;
}

function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v === "bigint") return v.toString();
    if (v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Date)) {
      return Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    }
    return v;
  });
}
