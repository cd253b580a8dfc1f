/**
 * The interceptors every call goes through, outermost first: logging (request id, method, code,
 * duration), error mapping (errors.ts, for unary answers and mid-stream errors alike), deadline.
 */
import {
  Code,
  ConnectError,
  createContextKey,
  type HandlerContext,
  type Interceptor,
} from "@connectrpc/connect";
import type { Logger } from "pino";
import { loggerKey, requestIdHeader, requestIdKey } from "./context.js";
import { toConnectError } from "./errors.js";

/** The caller's own timeout, as connect parsed it from grpc-timeout / connect-timeout-ms. */
const callerTimeoutKey = createContextKey<number | undefined>(undefined);

/**
 * Connect `requestGate`: runs before the request body is read, on every protocol. Echoes the request
 * id (so error answers carry it too) and remembers the caller's timeout, which interceptors cannot
 * see otherwise.
 */
export function callGate(ctx: HandlerContext): void {
  ctx.responseHeader.set(requestIdHeader, ctx.values.get(requestIdKey));
  ctx.values.set(callerTimeoutKey, ctx.timeoutMs());
}

/** Logs one line per call: debug when OK, warn for a caller's error, error for a server fault. */
export function loggingInterceptor(log: Logger): Interceptor {
  return (next) => async (req) => {
    const callLog = log.child({
      requestId: req.contextValues.get(requestIdKey),
      rpc: `${req.service.typeName}/${req.method.name}`,
    });
    req.contextValues.set(loggerKey, callLog);
    const started = performance.now();
    try {
      const res = await next(req);
      if (!res.stream) {
        logOutcome(callLog, undefined, started);
        return res;
      }
      return { ...res, message: observe(res.message, (e) => logOutcome(callLog, e, started)) };
    } catch (e) {
      logOutcome(callLog, e, started);
      throw e;
    }
  };
}

/** Maps whatever a handler throws, before or during a stream, through toConnectError. */
export function errorMappingInterceptor(): Interceptor {
  return (next) => async (req) => {
    const log = () => req.contextValues.get(loggerKey);
    try {
      const res = await next(req);
      if (!res.stream) return res;
      return { ...res, message: mapErrors(res.message, log) };
    } catch (e) {
      throw toConnectError(e, log());
    }
  };
}

/** Deadline limits, in milliseconds. */
export interface DeadlineOptions {
  /** Applied when the caller sets no deadline. */
  defaultTimeoutMs: number;
  /** Longer caller deadlines are cut down to this. */
  maxTimeoutMs: number;
}

/**
 * Gives unary and client-streaming calls a deadline: the caller's, else `defaultTimeoutMs`, never more
 * than `maxTimeoutMs`. The handler's signal aborts at the deadline and the caller gets
 * DEADLINE_EXCEEDED then, even if the handler ignores its signal. Server and bidi streams (watches)
 * are long-lived by design: they keep only the caller's own deadline and end on drain.
 *
 * connect's own `maxTimeoutMs` rejects a longer deadline with INVALID_ARGUMENT instead of capping it,
 * and it has no server default, so this is done here.
 */
export function deadlineInterceptor(opts: DeadlineOptions): Interceptor {
  return (next) => async (req) => {
    const kind = req.method.methodKind;
    if (kind === "server_streaming" || kind === "bidi_streaming") return next(req);
    const callerMs = req.contextValues.get(callerTimeoutKey);
    const ms = Math.max(0, Math.min(callerMs ?? opts.defaultTimeoutMs, opts.maxTimeoutMs));
    const deadline = new AbortController();
    const timer = setTimeout(
      () => deadline.abort(new ConnectError("deadline exceeded", Code.DeadlineExceeded)),
      ms,
    );
    try {
      const signal = AbortSignal.any([req.signal, deadline.signal]);
      return await raceAbort(next({ ...req, signal }), deadline.signal);
    } finally {
      clearTimeout(timer);
    }
  };
}

function logOutcome(log: Logger, error: unknown, started: number): void {
  const code = error === undefined ? undefined : ConnectError.from(error).code;
  const fields = {
    code: code === undefined ? "ok" : Code[code],
    ms: Math.round(performance.now() - started),
  };
  if (code === undefined) log.debug(fields, "call ok");
  else if (code === Code.Internal || code === Code.Unknown || code === Code.DataLoss)
    log.error(fields, "call failed");
  else log.warn({ ...fields, message: ConnectError.from(error).rawMessage }, "call failed");
}

/** Passes a stream through and reports how it ended: undefined when complete, else the error. */
async function* observe<T>(source: AsyncIterable<T>, done: (error: unknown) => void): AsyncIterable<T> {
  let outcome: unknown = new ConnectError("stream abandoned by the caller", Code.Canceled);
  try {
    yield* source;
    outcome = undefined;
  } catch (e) {
    outcome = e;
    throw e;
  } finally {
    done(outcome);
  }
}

async function* mapErrors<T>(source: AsyncIterable<T>, log: () => Logger): AsyncIterable<T> {
  try {
    yield* source;
  } catch (e) {
    throw toConnectError(e, log());
  }
}

/** Settles like `p`, unless `signal` aborts first: then rejects with the abort reason. */
function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
