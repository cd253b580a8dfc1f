import { invalidArgument } from "../errors.js";

/**
 * The opaque WatchOrders cursor: a position (seq) in one user's event stream, bound to that user so
 * a cursor of one user's stream is refused on another's.
 */
export function encodeEventCursor(userId: string, seq: number): string {
  return Buffer.from(JSON.stringify({ v: 1, u: userId, s: seq })).toString("base64url");
}

/** Decodes a cursor issued for `userId`; empty means "start live". Anything else is INVALID_ARGUMENT. */
export function decodeEventCursor(value: string, userId: string, field = "after_cursor"): number | null {
  if (value === "") return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(value, "base64url").toString("utf8"));
  } catch {
    throw invalidArgument(field, "is not a valid cursor");
  }
  const p = parsed as { v?: unknown; u?: unknown; s?: unknown };
  if (p?.v !== 1 || typeof p.u !== "string" || !Number.isSafeInteger(p.s) || (p.s as number) < 0)
    throw invalidArgument(field, "is not a valid cursor");
  if (p.u !== userId) throw invalidArgument(field, "was issued for another user's stream");
  return p.s as number;
}
