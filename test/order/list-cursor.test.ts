import { describe, expect, it } from "vitest";
import { clampCursor } from "../../src/order/order-keyset.js";
import { listQuery as query } from "./seed-orders.js";

// The clamp of a (possibly forged) page token's key to the listing's own range, at its exact
// boundaries. list-orders.test.ts checks the same through the API against the model.

// 2026-11-23T10:00:00.000123Z and 2026-11-24T10:00:00.5Z in epoch microseconds.
const AFTER = 1_795_428_000_000_123n;
const BEFORE = 1_795_514_400_500_000n;

describe("clampCursor", () => {
  const newest = query({
    createdAfter: "2026-11-23T10:00:00.000123Z",
    createdBefore: "2026-11-24T10:00:00.5Z",
  });
  const key = (us: bigint) => [String(us), "ord_X"];

  it("NEWEST: keeps a cursor inside [created_after, created_before)", () => {
    for (const us of [AFTER, AFTER + 1n, BEFORE - 1n]) expect(clampCursor(newest, key(us))).toEqual(key(us));
  });

  it("NEWEST: a cursor at or after created_before is the first page; one before created_after is past the range", () => {
    for (const us of [BEFORE, BEFORE + 10n ** 15n]) expect(clampCursor(newest, key(us))).toBeNull();
    for (const us of [AFTER - 1n, -(10n ** 15n)]) expect(clampCursor(newest, key(us))).toBe("past the range");
  });

  it("HIGHEST_TOTAL: clamps on [min_total_minor, max_total_minor], not on the created range", () => {
    const q = query({
      sort: "highest_total",
      minTotalMinor: 500,
      maxTotalMinor: 9000,
      createdAfter: "2026-11-23T10:00:00Z",
    });
    const total = (t: bigint) => [String(t), "0", "ord_X"];
    for (const t of [500n, 9000n]) expect(clampCursor(q, total(t))).toEqual(total(t));
    expect(clampCursor(q, total(9001n))).toBeNull();
    expect(clampCursor(q, total(499n))).toBe("past the range");
  });

  it("leaves a cursor alone without bounds, or with a time it does not read", () => {
    expect(clampCursor(query({}), key(BEFORE))).toEqual(key(BEFORE));
    expect(clampCursor(query({ createdBefore: "2026-11-24 10:00:00+00" }), key(BEFORE))).toEqual(key(BEFORE));
    expect(clampCursor(query({ sort: "highest_total" }), ["1", "0", "ord_X"])).toEqual(["1", "0", "ord_X"]);
    expect(clampCursor(newest, null)).toBeNull();
  });
});
