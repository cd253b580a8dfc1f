import { describe, expect, it } from "vitest";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import { OrderService } from "../../gen/shop/order/v1/order_pb.js";
import { ReservationService } from "../../gen/shop/reservation/v1/reservation_pb.js";
import { ACCESS, checkCaller, ruleFor } from "../../src/auth/access.js";

const methods = [InventoryService, ReservationService, OrderService].flatMap((s) =>
  s.methods.map((m) => `${s.typeName}/${m.name}`),
);

describe("the access table (src/auth/access.ts)", () => {
  it("has exactly one rule for every method of the three services", () => {
    expect(methods).toHaveLength(25);
    expect(Object.keys(ACCESS).sort()).toEqual([...methods].sort());
  });

  it("refuses a method it does not list, whoever calls", () => {
    expect(ruleFor("shop.order.v1.OrderService/DropAllTables")).toBeUndefined();
    expect(ruleFor("toString")).toBeUndefined();
    const operator = { subject: "op", operator: true, service: true };
    expect(() => checkCaller(undefined, operator)).toThrow(/not open/);
  });
});
