import { describe, expect, it } from "vitest";
import { rpcCodesIn } from "../../bench/lib/h2load.js";
import { gcBetween, gcTotals } from "../../bench/lib/server-gc.js";

// One /metrics text serves both readings (GC and calls by code), so scenario 5 reads it once per side.
const metrics = (minor: number, major: number, ok: number) =>
  [
    "# HELP nodejs_gc_duration_seconds Garbage collection duration by kind, one of major, minor, incremental or weakcb.",
    "# TYPE nodejs_gc_duration_seconds histogram",
    `nodejs_gc_duration_seconds_bucket{le="0.001",kind="minor"} ${minor}`,
    `nodejs_gc_duration_seconds_sum{kind="minor"} ${minor * 0.0005}`,
    `nodejs_gc_duration_seconds_count{kind="minor"} ${minor}`,
    `nodejs_gc_duration_seconds_sum{kind="major"} ${major * 0.01}`,
    `nodejs_gc_duration_seconds_count{kind="major"} ${major}`,
    `rpc_server_duration_seconds_count{service="shop.order.v1.OrderService",method="ListOrders",code="ok"} ${ok}`,
    `rpc_server_duration_seconds_count{service="shop.order.v1.OrderService",method="GetOrder",code="ok"} 99`,
    "",
  ].join("\n");

describe("gcTotals", () => {
  it("reads collections and pause sums by kind, and gcBetween takes the difference", () => {
    const before = gcTotals(metrics(10, 1, 5));
    expect(before.count).toEqual({ minor: 10, major: 1 });
    expect(before.ms.major).toBeCloseTo(10);
    const between = gcBetween(before, gcTotals(metrics(14, 3, 9)));
    expect(between.count).toEqual({ minor: 4, major: 2 });
    expect(between.ms).toBeCloseTo(4 * 0.5 + 2 * 10);
  });

  it("shares the text with rpcCodesIn, which reads only the named method", () => {
    expect(rpcCodesIn(metrics(1, 0, 7), "shop.order.v1.OrderService", "ListOrders")).toEqual({ ok: 7 });
    expect(rpcCodesIn(metrics(1, 0, 7), "shop.order.v1.OrderService", "CreateOrder")).toEqual({});
  });
});
