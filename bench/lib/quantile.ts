/**
 * The q-quantile of an ascending sample by the nearest-rank definition: the smallest value with at
 * least a share q of the sample at or below it, i.e. the ceil(q x n)-th value. So p99 of 100 calls is
 * the 99th (the second-worst), of 200 the 198th, of 1000 the 990th; p50 of 4 values is the 2nd.
 * `empty` is returned for an empty sample.
 *
 * Every percentile the bench computes from its own samples comes from here. (Until stop 13 each
 * scenario took the value at index floor(q x n), one rank too high: the p99 of 100 calls was the
 * worst of them.)
 */
export function quantile(sorted: readonly number[], q: number, empty = Number.NaN): number {
  const n = sorted.length;
  if (n === 0) return empty;
  // q x n can land a hair above an integer (0.07 x 100 is 7.000000000000001): round that away first.
  const rank = Math.ceil(Number((q * n).toPrecision(12)));
  return sorted[Math.min(n, Math.max(1, rank)) - 1] as number;
}
