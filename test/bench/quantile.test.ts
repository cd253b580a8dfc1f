import { describe, expect, it } from "vitest";
import { quantile } from "../../bench/lib/quantile.js";

const upTo = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

describe("quantile (nearest rank)", () => {
  it("takes the ceil(q x n)-th value: p99 of 100 is the 99th, of 200 the 198th", () => {
    expect(quantile(upTo(100), 0.99)).toBe(99);
    expect(quantile(upTo(200), 0.99)).toBe(198);
    expect(quantile(upTo(1000), 0.99)).toBe(990);
    expect(quantile(upTo(157), 0.99)).toBe(156);
    expect(quantile(upTo(1000), 0.999)).toBe(999);
  });

  it("p50 of an even sample is the lower middle value, of an odd one the middle", () => {
    expect(quantile(upTo(4), 0.5)).toBe(2);
    expect(quantile(upTo(5), 0.5)).toBe(3);
  });

  it("is not pushed one rank up by floating point (0.07 x 100 = 7.000000000000001)", () => {
    expect(quantile(upTo(100), 0.07)).toBe(7);
  });

  it("clamps to the sample: q of 0 is the smallest, q of 1 the largest, one value is every quantile", () => {
    expect(quantile(upTo(10), 0)).toBe(1);
    expect(quantile(upTo(10), 1)).toBe(10);
    expect(quantile([42], 0.99)).toBe(42);
  });

  it("returns the given value for an empty sample", () => {
    expect(quantile([], 0.99)).toBeNaN();
    expect(quantile([], 0.99, 0)).toBe(0);
  });
});
