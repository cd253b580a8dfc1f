import { invalidArgument } from "../errors.js";

/** Every limit of the reservation API, in one place (the .proto comments state the same numbers). */
export const RESERVATION_LIMITS = {
  maxItems: 100,
  maxQuantity: 10_000,
  defaultPageSize: 20,
  maxPageSize: 100,
} as const;

/** Rejects a request naming a product twice (the repeat is named). */
export function checkDistinctProducts(productIds: string[], field: string): void {
  const seen = new Set<string>();
  productIds.forEach((id, i) => {
    if (seen.has(id)) throw invalidArgument(`${field}[${i}].product_id`, "names a product twice");
    seen.add(id);
  });
}

/**
 * A requested TTL in seconds: unset means the default; a longer one than the maximum is capped to it
 * (the answer's expire_time says what the caller got).
 */
export function ttlSeconds(
  requested: { seconds: bigint; nanos: number } | undefined,
  field: string,
  defaultS: number,
  maxS: number,
): number {
  if (!requested) return defaultS;
  const seconds = Number(requested.seconds) + requested.nanos / 1e9;
  if (!Number.isFinite(seconds) || seconds < 1) throw invalidArgument(field, "must be at least 1s");
  return Math.min(Math.ceil(seconds), maxS);
}
