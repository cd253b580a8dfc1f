import { Code, ConnectError } from "@connectrpc/connect";
import { expect } from "vitest";
import { ErrorReasonSchema, ShortItemSchema } from "../../gen/shop/common/v1/errors_pb.js";

/** Runs a call expected to fail and returns its ConnectError (fails the test if it succeeds). */
export async function rejection(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (e) {
    return ConnectError.from(e);
  }
  throw new Error("expected the call to fail, but it succeeded");
}

/** Asserts the code, and the named field both in the message and in the ErrorReason detail. */
export async function expectError(call: Promise<unknown>, code: Code, field?: string): Promise<ConnectError> {
  const err = await rejection(call);
  expect(Code[err.code], err.rawMessage).toBe(Code[code]);
  if (field !== undefined) {
    expect(err.rawMessage).toContain(field);
    expect(err.findDetails(ErrorReasonSchema)[0]?.field).toBe(field);
  }
  return err;
}

export function shortItems(err: ConnectError) {
  return err.findDetails(ShortItemSchema);
}
