/**
 * The connect `requestGate` the server installs: callGate (request id, caller timeout) and then the
 * app's own gate (authentication), both before the request body is read. A call the app's gate
 * rejects never reaches the interceptors, so its error is mapped (errors.ts) and logged here.
 */
import { Code, type HandlerContext } from "@connectrpc/connect";
import type { Logger } from "pino";
import { requestIdKey } from "./context.js";
import { toConnectError } from "./errors.js";
import { callGate } from "./interceptors.js";

/** A gate that may reject a call from its headers alone (throw to reject). */
export type RequestGate = (ctx: HandlerContext) => void | Promise<void>;

/** callGate, then `extra` (if any) with its errors mapped through toConnectError and logged. */
export function composeGate(extra: RequestGate | undefined, log: Logger): RequestGate {
  if (extra === undefined) return callGate;
  return async (ctx) => {
    callGate(ctx);
    try {
      await extra(ctx);
    } catch (e) {
      const err = toConnectError(e, log);
      log.warn(
        {
          requestId: ctx.values.get(requestIdKey),
          rpc: `${ctx.service.typeName}/${ctx.method.name}`,
          code: Code[err.code],
          message: err.rawMessage,
        },
        "call rejected before its body was read",
      );
      throw err;
    }
  };
}
