import type { StringRule } from "../validation.js";

/** Every limit of the order API, in one place (the .proto comments state the same numbers). */
export const ORDER_LIMITS = {
  maxItems: 100,
  maxQuantity: 10_000,
  /** RFC 5321 caps an address at 254 characters; the pattern is a sanity check, not a full parser. */
  customerEmail: {
    min: 1,
    max: 254,
    pattern: /^[^\s@]+@[^\s@]+\.[^\s@]+$/u,
    patternHint: "must be an email address like name@example.com",
  } satisfies StringRule,
  reason: { max: 500 } satisfies StringRule,
  providerReference: { min: 1, max: 200 } satisfies StringRule,
  maxAmountMinor: 1_000_000_000_000_000, // 10^15 minor units, within int53
  maxVersion: Number.MAX_SAFE_INTEGER,
  defaultPageSize: 20,
  maxPageSize: 100,
  defaultTopCustomers: 10,
  maxTopCustomers: 100,
} as const;
