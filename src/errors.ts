/**
 * Domain errors: what went wrong, said where it happens. Domain code throws these and never picks a
 * transport status; src/server/errors.ts maps each reason to a Connect/gRPC code in one table.
 */
export type ErrorReason =
  | "invalid_argument" // bad input; `field` names it
  | "not_found" // no such object, or another user's
  | "already_exists" // a unique key is taken (e.g. a seller's sku)
  | "insufficient_stock" // not enough available stock; `details` lists the short items
  | "illegal_transition" // a state machine refused the move
  | "reservation_expired" // the reservation is past its TTL, released or confirmed
  | "version_conflict" // expected_version is stale
  | "idempotency_mismatch" // the key was used before with a different request
  | "idempotency_in_flight" // the first request with this key is still running
  | "lock_contention" // a lock was held by someone else for the whole retry budget
  | "lock_unavailable" // the Redis lock quorum cannot be reached
  | "shard_unavailable" // a Postgres shard cannot be reached
  | "deadline_exceeded" // the caller's deadline passed while we worked
  | "unauthenticated" // no valid bearer token (missing, expired, wrong issuer/audience/signature)
  | "permission_denied" // the caller may not do this
  | "rate_limited" // the caller made more calls than its per-second allowance
  | "unimplemented"; // the RPC is part of the contract but not served yet

export interface DomainErrorOptions {
  /** The request field the error is about, as a dotted path such as `items[2].quantity`. */
  field?: string;
  /** Structured details for the caller (e.g. short items); plain data only. */
  details?: unknown;
  /** The underlying error, for the log only; never shown to a caller. */
  cause?: unknown;
}

/** An error a caller may see: its message must never contain SQL, host names or stack traces. */
export class DomainError extends Error {
  readonly reason: ErrorReason;
  readonly field: string | undefined;
  readonly details: unknown;

  constructor(reason: ErrorReason, message: string, options: DomainErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "DomainError";
    this.reason = reason;
    this.field = options.field;
    this.details = options.details;
  }
}

/** Shorthand for the most common error: bad input in one named field. */
export function invalidArgument(field: string, message: string): DomainError {
  return new DomainError("invalid_argument", `${field}: ${message}`, { field });
}

export function isDomainError(e: unknown): e is DomainError {
  return e instanceof DomainError;
}
