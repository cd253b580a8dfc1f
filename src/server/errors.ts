/**
 * The one place where an error becomes a Connect/gRPC status. Domain code says what happened
 * (src/errors.ts); this file picks the code. Nothing but a DomainError's own message, or a fixed
 * text, ever reaches a caller: no SQL, host names, file paths or stacks.
 */

import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "pino";
import { ErrorReasonSchema, ShortItemSchema } from "../../gen/shop/common/v1/errors_pb.js";
import { type ErrorReason, isDomainError } from "../errors.js";

/** Domain reason -> Connect code. Every reason is listed: the compiler checks the table is complete. */
export const reasonCodes: Readonly<Record<ErrorReason, Code>> = {
  invalid_argument: Code.InvalidArgument,
  not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  insufficient_stock: Code.FailedPrecondition,
  illegal_transition: Code.FailedPrecondition,
  reservation_expired: Code.FailedPrecondition,
  version_conflict: Code.Aborted,
  idempotency_in_flight: Code.Aborted,
  lock_contention: Code.Aborted,
  idempotency_mismatch: Code.InvalidArgument,
  lock_unavailable: Code.Unavailable,
  shard_unavailable: Code.Unavailable,
  deadline_exceeded: Code.DeadlineExceeded,
  unauthenticated: Code.Unauthenticated,
  permission_denied: Code.PermissionDenied,
  rate_limited: Code.ResourceExhausted,
  unimplemented: Code.Unimplemented,
};

/** Node socket errors and Postgres SQLSTATEs that mean "the database could not be reached". */
const connectionCodes = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENOTFOUND",
  "EPIPE",
  "57P01", // admin_shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now (starting up, recovery)
  "53300", // too_many_connections: refused at connect time, retry elsewhere/later
]);
/** Postgres SQLSTATEs after which a retry of the whole operation may succeed. */
const retryCodes = new Set(["40001", "40P01"]); // serialization, deadlock

/** A detail to attach to a ConnectError (the type is not exported by connect). */
type OutgoingDetail = NonNullable<ConstructorParameters<typeof ConnectError>[3]>[number];

interface Classified {
  code: Code;
  message: string;
}

/**
 * Converts anything thrown by a handler into a ConnectError a caller may see. ConnectErrors pass
 * through; DomainErrors get their code from `reasonCodes` plus an ErrorReason detail; storage errors
 * are classified by their code; everything else is logged with its stack and becomes "internal error".
 */
export function toConnectError(e: unknown, log: Logger): ConnectError {
  if (e instanceof ConnectError) return e;
  // An abort caused by our deadline or drain carries the ConnectError that says why as its cause.
  if (e instanceof Error && e.name === "AbortError" && e.cause instanceof ConnectError) return e.cause;
  if (isDomainError(e)) {
    const details: OutgoingDetail[] = [
      { desc: ErrorReasonSchema, value: { reason: e.reason, field: e.field ?? "" } },
    ];
    if (e.reason === "insufficient_stock") details.push(...shortItemDetails(e.details, log));
    return new ConnectError(e.message, reasonCodes[e.reason], undefined, details, e);
  }
  const known = classify(e);
  if (known !== undefined) {
    // Expected under faults; warn so the cause (host, SQL) stays in the log and out of the answer.
    log.warn({ err: e, code: Code[known.code] }, "storage error mapped to %s", Code[known.code]);
    return new ConnectError(known.message, known.code, undefined, undefined, e);
  }
  log.error({ err: e }, "unexpected error");
  return new ConnectError("internal error", Code.Internal, undefined, undefined, e);
}

/** Looks through the error and its causes (drivers and ORMs wrap) for a code we recognise. */
function classify(e: unknown): Classified | undefined {
  let current: unknown = e;
  for (let depth = 0; depth < 5 && typeof current === "object" && current !== null; depth++) {
    const found = classifyOne(current as Record<string, unknown>);
    if (found !== undefined) return found;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

function classifyOne(err: Record<string, unknown>): Classified | undefined {
  const code = typeof err.code === "string" ? err.code : undefined;
  const name = typeof err.name === "string" ? err.name : "";
  const message = typeof err.message === "string" ? err.message : "";
  if (name === "AbortError") return { code: Code.Canceled, message: "canceled" };
  // 57014: statement_timeout; 55P03: lock_timeout. Both are only ever set from the caller's deadline.
  if (name === "TimeoutError" || code === "57014" || code === "55P03") {
    return { code: Code.DeadlineExceeded, message: "deadline exceeded" };
  }
  if (code !== undefined && retryCodes.has(code)) return { code: Code.Aborted, message: "conflict, retry" };
  if (
    (code !== undefined && (connectionCodes.has(code) || code.startsWith("08"))) ||
    name === "ConnectionException" ||
    message.includes("Connection terminated")
  ) {
    return { code: Code.Unavailable, message: "shard unavailable" };
  }
  return undefined;
}

/** ShortItem details for insufficient_stock; malformed entries are logged and left out, not fatal. */
function shortItemDetails(details: unknown, log: Logger): OutgoingDetail[] {
  if (!Array.isArray(details)) return [];
  const out: OutgoingDetail[] = [];
  for (const item of details as unknown[]) {
    const short = toShortItem(item);
    if (short === undefined) log.warn({ item }, "insufficient_stock detail is not a short item");
    else out.push({ desc: ShortItemSchema, value: create(ShortItemSchema, short) });
  }
  return out;
}

function toShortItem(item: unknown) {
  if (typeof item !== "object" || item === null) return undefined;
  const { productId, warehouseId, requested, available } = item as Record<string, unknown>;
  if (typeof productId !== "string" || typeof warehouseId !== "string") return undefined;
  if (!isInteger(requested) || !isInteger(available)) return undefined;
  return { productId, warehouseId, requested: BigInt(requested), available: BigInt(available) };
}

function isInteger(v: unknown): v is number | bigint {
  return typeof v === "bigint" || (typeof v === "number" && Number.isSafeInteger(v));
}
