import { invalidArgument } from "./errors.js";

/**
 * Field-named checks for request values. Every failure is INVALID_ARGUMENT with the field's path in
 * the message, so callers can tell which input to fix. Pure: no protobuf, no I/O.
 */

export interface StringRule {
  min?: number;
  max: number;
  pattern?: RegExp;
  patternHint?: string;
}

/** Checks a string's length (in characters) and optional pattern; returns it unchanged. */
export function checkString(value: string, field: string, rule: StringRule): string {
  const min = rule.min ?? 0;
  const length = [...value].length;
  if (length < min)
    throw invalidArgument(field, min === 1 ? "is required" : `must have at least ${min} characters`);
  if (length > rule.max) throw invalidArgument(field, `must have at most ${rule.max} characters`);
  if (rule.pattern && value !== "" && !rule.pattern.test(value)) {
    throw invalidArgument(field, rule.patternHint ?? "has an invalid format");
  }
  // Control characters make logs and UIs lie; no field of ours needs them.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: that is the point of the check.
  if (/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(value)) {
    throw invalidArgument(field, "must not contain control characters");
  }
  return value;
}

/** Converts an int64 to a safe JS integer within [min, max]. */
export function checkInt(value: bigint | number, field: string, min: number, max: number): number {
  if (
    typeof value === "bigint" &&
    (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER))
  ) {
    throw invalidArgument(field, `must be between ${min} and ${max}`);
  }
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min || n > max)
    throw invalidArgument(field, `must be between ${min} and ${max}`);
  return n;
}

/** An optional int64 field: null when unset, else checked like checkInt. */
export function checkOptionalInt(
  value: bigint | undefined,
  field: string,
  min: number,
  max: number,
): number | null {
  return value === undefined ? null : checkInt(value, field, min, max);
}

/** Applies the page-size convention: 0 means the default; otherwise 1..max. */
export function checkPageSize(value: number, field: string, defaultSize: number, max: number): number {
  if (value === 0) return defaultSize;
  if (!Number.isInteger(value) || value < 1 || value > max)
    throw invalidArgument(field, `must be between 1 and ${max}`);
  return value;
}

/** Opaque user ids: printable, no surrounding whitespace. */
export const USER_ID_RULE: StringRule = {
  min: 1,
  max: 128,
  pattern: /^\S(.*\S)?$/u,
  patternHint: "must not start or end with whitespace",
};

/** Idempotency keys: any printable string; UUIDs are typical. */
export const IDEMPOTENCY_KEY_RULE: StringRule = {
  min: 1,
  max: 128,
  pattern: /^[\x21-\x7e]+$/,
  patternHint: "must be printable ASCII without spaces",
};

/** ISO 4217 alphabetic currency codes. */
export const CURRENCY_RULE: StringRule = {
  min: 1,
  max: 3,
  pattern: /^[A-Z]{3}$/,
  patternHint: "must be an ISO 4217 code of three upper-case letters",
};
