import { Code, ConnectError } from "@connectrpc/connect";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { ErrorReasonSchema, ShortItemSchema } from "../../gen/shop/common/v1/errors_pb.js";
import { DomainError, type ErrorReason } from "../../src/errors.js";
import { reasonCodes, toConnectError } from "../../src/server/errors.js";

const lines: { level: number; msg: string; err?: { stack?: string } }[] = [];
const log = pino({ level: "debug" }, { write: (l: string) => lines.push(JSON.parse(l)) });

function pgError(code: string, message = 'relation "secret" at db-1.internal:5432'): Error {
  return Object.assign(new Error(message), { code });
}

describe("toConnectError", () => {
  it.each(Object.entries(reasonCodes))("maps %s to its code with an ErrorReason detail", (reason, code) => {
    const e = toConnectError(
      new DomainError(reason as ErrorReason, "said where it happened", { field: "f" }),
      log,
    );
    expect(e.code).toBe(code);
    expect(e.rawMessage).toBe("said where it happened");
    expect(e.findDetails(ErrorReasonSchema)).toMatchObject([{ reason, field: "f" }]);
  });

  it("follows the agreed table", () => {
    expect(reasonCodes).toMatchObject({
      insufficient_stock: Code.FailedPrecondition,
      version_conflict: Code.Aborted,
      idempotency_mismatch: Code.InvalidArgument,
      lock_unavailable: Code.Unavailable,
      shard_unavailable: Code.Unavailable,
    });
  });

  it("adds ShortItem details for insufficient_stock", () => {
    const details = [
      { productId: "p1", warehouseId: "w1", requested: 5, available: 2 },
      { productId: "p2", warehouseId: "w2", requested: 3n, available: 0n },
      { productId: "broken" },
    ];
    const e = toConnectError(new DomainError("insufficient_stock", "not enough stock", { details }), log);
    expect(e.findDetails(ShortItemSchema)).toMatchObject([
      { productId: "p1", warehouseId: "w1", requested: 5n, available: 2n },
      { productId: "p2", warehouseId: "w2", requested: 3n, available: 0n },
    ]);
  });

  it("passes a ConnectError through untouched", () => {
    const original = new ConnectError("already mapped", Code.ResourceExhausted);
    expect(toConnectError(original, log)).toBe(original);
  });

  it("unwraps an AbortError to the ConnectError its signal was aborted with", () => {
    const reason = new ConnectError("deadline exceeded", Code.DeadlineExceeded);
    const abort = Object.assign(new Error("The operation was aborted", { cause: reason }), {
      name: "AbortError",
    });
    expect(toConnectError(abort, log)).toBe(reason);
    const plain = Object.assign(new Error("The operation was aborted"), { name: "AbortError" });
    expect(toConnectError(plain, log).code).toBe(Code.Canceled);
  });

  it.each([
    ["ECONNREFUSED", Code.Unavailable, "shard unavailable"],
    ["ETIMEDOUT", Code.Unavailable, "shard unavailable"],
    ["57P01", Code.Unavailable, "shard unavailable"],
    ["08006", Code.Unavailable, "shard unavailable"],
    ["57014", Code.DeadlineExceeded, "deadline exceeded"],
    ["40001", Code.Aborted, "conflict, retry"],
    ["40P01", Code.Aborted, "conflict, retry"],
  ])("classifies driver code %s", (code, expected, message) => {
    const e = toConnectError(pgError(code), log);
    expect([e.code, e.rawMessage]).toEqual([expected, message]);
  });

  it("recognises MikroORM's ConnectionException and pg's terminated connection, also as a cause", () => {
    const orm = Object.assign(new Error("connect ECONNREFUSED 10.0.0.7:5432"), {
      name: "ConnectionException",
    });
    const wrapped = new Error("query failed", { cause: new Error("Connection terminated unexpectedly") });
    expect(toConnectError(orm, log).code).toBe(Code.Unavailable);
    expect(toConnectError(wrapped, log).code).toBe(Code.Unavailable);
  });

  it("turns anything else into 'internal error' and logs the original with its stack", () => {
    lines.length = 0;
    const e = toConnectError(pgError("42P01", 'relation "secret" does not exist: SELECT * FROM secret'), log);
    expect([e.code, e.rawMessage]).toEqual([Code.Internal, "internal error"]);
    expect(e.message).not.toMatch(/SELECT|secret/);
    expect(lines[0]?.level).toBe(50);
    expect(lines[0]?.err?.stack).toContain("errors.test.ts");
    expect(toConnectError("a string", log).rawMessage).toBe("internal error");
  });
});
