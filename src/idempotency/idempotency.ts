import { createHash } from "node:crypto";
import type { EntityManager } from "@mikro-orm/postgresql";
import { DomainError, invalidArgument } from "../errors.js";

/** What identifies one logical request: who it is for, the caller's key, and what was asked. */
export interface IdempotencyClaim {
  /** Whose key space this is (e.g. `seller:<id>`); keys of different scopes never collide. */
  scope: string;
  key: string;
  /** Hash of the method and the request without its key: a replay must match it exactly. */
  requestHash: string;
}

/** The claim of one request: its scope, the caller's key, and the hash of the method and request. */
export function claimFor(scope: string, method: string, key: string, request: unknown): IdempotencyClaim {
  return { scope, key, requestHash: hashRequest(method, request) };
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
    const prior = await claimKey(tx, claim);
    if (prior.state === "done") return prior.response as T;
    if (prior.state === "pending") throw inFlight();
    const result = await work(tx);
    await completeKey(tx, claim, result);
    return result;
  });
}

/**
 * Refuses a key already used with a different request (INVALID_ARGUMENT) without claiming anything:
 * for work that must not start at all under a mismatched key (an order that would reserve first).
 */
export async function checkKeyMatches(em: EntityManager, claim: IdempotencyClaim): Promise<void> {
  const rows = await em.execute<{ request_hash: string }[]>(
    "select request_hash from idempotency_records where scope = ? and key = ?",
    [claim.scope, claim.key],
  );
  if (rows[0] && rows[0].request_hash !== claim.requestHash)
    throw invalidArgument("idempotency_key", "was already used with a different request");
}

/**
 * Deletes up to `limit` finished records older than `olderThanSeconds` (database clock) and returns
 * how many. Records still claimed by running work (no answer yet, or a `$pending` saga marker) are
 * kept whatever their age: their work may still complete or be taken over by a replay.
 */
export async function expireRecords(
  em: EntityManager,
  olderThanSeconds: number,
  limit: number,
): Promise<number> {
  const res = await em.execute<{ affectedRows: number }>(
    `delete from idempotency_records where (scope, key) in (
       select scope, key from idempotency_records
       where created_at < now() - make_interval(secs => ?)
         and response <> 'null'::jsonb and response ->> '$pending' is null
       order by created_at limit ?)`,
    [olderThanSeconds, limit],
    "run",
  );
  return res.affectedRows;
}

/** What a claim found: a fresh key (now held by the caller's transaction), a finished answer, or work still running. */
export type ClaimResult =
  | { state: "new" }
  | { state: "done"; response: unknown }
  /** Claimed by a request still running (or crashed): `ref` is what it marked, e.g. its reservation id. */
  | { state: "pending"; ref: string | null };

/**
 * Inserts the key with no answer yet, or reports what an earlier request with it left. Long-running
 * work (a saga) commits the claim on its own, then calls completeKey or dropKey when it ends.
 */
export async function claimKey(tx: EntityManager, claim: IdempotencyClaim): Promise<ClaimResult> {
  const inserted = await tx.execute(
    `insert into idempotency_records (scope, key, request_hash, response) values (?, ?, ?, 'null'::jsonb)
     on conflict (scope, key) do nothing returning 1 as ok`,
    [claim.scope, claim.key, claim.requestHash],
  );
  if (inserted.length > 0) return { state: "new" };
  const rows = await tx.execute<{ request_hash: string; response: unknown }[]>(
    "select request_hash, response from idempotency_records where scope = ? and key = ?",
    [claim.scope, claim.key],
  );
  const row = rows[0];
  if (!row) return claimKey(tx, claim); // dropped between our insert and select: claim it again
  return priorClaim(claim, row.request_hash, row.response);
}

/**
 * What an existing record of the claim's key means: INVALID_ARGUMENT when it was made by a different
 * request, else the stored answer or the work still running.
 */
export function priorClaim(
  claim: IdempotencyClaim,
  requestHash: string,
  response: unknown,
): Exclude<ClaimResult, { state: "new" }> {
  if (requestHash !== claim.requestHash) {
    throw invalidArgument("idempotency_key", "was already used with a different request");
  }
  if (response === null) return { state: "pending", ref: null };
  const pending = (response as { $pending?: unknown }).$pending;
  if (typeof pending === "string") return { state: "pending", ref: pending };
  return { state: "done", response: reviveJson(response) };
}

/** Stores the answer of a claimed key: every later replay gets exactly this. */
export async function completeKey(
  tx: EntityManager,
  claim: IdempotencyClaim,
  response: unknown,
): Promise<void> {
  await tx.execute("update idempotency_records set response = ?::jsonb where scope = ? and key = ?", [
    JSON.stringify(response, dateReplacer),
    claim.scope,
    claim.key,
  ]);
}

/**
 * Marks a claimed key as taken by long-running work identified by `ref` (committed with the work's
 * intent), so a replay can find that work and wait for it, or take over once it has failed.
 */
export async function markPending(tx: EntityManager, claim: IdempotencyClaim, ref: string): Promise<void> {
  await tx.execute("update idempotency_records set response = ?::jsonb where scope = ? and key = ?", [
    JSON.stringify({ $pending: ref }),
    claim.scope,
    claim.key,
  ]);
}

/**
 * Forgets a claimed key whose request failed with no effect, so a retry may try again. With `ref`,
 * only while the key is still marked as taken by that work: a replay may have taken it over since.
 */
export async function dropKey(tx: EntityManager, claim: IdempotencyClaim, ref?: string): Promise<void> {
  if (ref !== undefined) {
    await tx.execute(
      "delete from idempotency_records where scope = ? and key = ? and response ->> '$pending' = ?",
      [claim.scope, claim.key, ref],
    );
    return;
  }
  await tx.execute(
    "delete from idempotency_records where scope = ? and key = ? and (response = 'null'::jsonb or response ->> '$pending' is not null)",
    [claim.scope, claim.key],
  );
}

/** The answer for a replay that arrives while the first request is still running. */
export function inFlight(): DomainError {
  return new DomainError(
    "idempotency_in_flight",
    "idempotency_key: the first request with this key is still running, retry",
    {
      field: "idempotency_key",
    },
  );
}

function dateReplacer(this: Record<string, unknown>, key: string, value: unknown): unknown {
  const raw = this[key];
  return raw instanceof Date ? { $date: raw.toISOString() } : value;
}

/** A stored answer as the first request returned it (dates revived). */
export function reviveJson(value: unknown): unknown {
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
