/**
 * The interceptors every call goes through, outermost first: observation (trace context, server span,
 * metrics), logging (request id, trace id, method, code, duration), error mapping (errors.ts, for
 * unary answers and mid-stream errors alike), deadline.
 */
import {
  Code,
  ConnectError,
  createContextKey,
  type HandlerContext,
  type Interceptor,
} from "@connectrpc/connect";
import { type Context, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import type { Logger } from "pino";
import { codeLabel, type Metrics } from "../observability/metrics.js";
import { type Tracing, traceFields } from "../observability/tracing.js";
import { withDeadline } from "../shard/deadline.js";
import { loggerKey, requestIdHeader, requestIdKey, spanKey } from "./context.js";
import { toConnectError } from "./errors.js";
import { linkSignals } from "./signals.js";

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

/**
 * Outermost: takes the caller's W3C trace context (`traceparent`), starts the call's server span as
 * its child and runs the handler (every chunk of a stream too) inside it, so shard queries nest under
 * it; counts the call and times it by service, method and final code (after error mapping).
 */
export function observationInterceptor(obs: { tracing: Tracing; metrics?: Metrics }): Interceptor {
  const { tracing, metrics } = obs;
  return (next) => async (req) => {
    const service = req.service.typeName;
    const method = req.method.name;
    const span = tracing.startSpan(
      `${service}/${method}`,
      SpanKind.SERVER,
      { "rpc.system": rpcSystem(req.header), "rpc.service": service, "rpc.method": method },
      tracing.extract(req.header),
    );
    req.contextValues.set(spanKey, span);
    metrics?.rpcStarted(service, method);
    const started = performance.now();
    const done = (error: unknown) => {
      const code = error === undefined ? undefined : ConnectError.from(error).code;
      metrics?.rpcHandled(service, method, code, (performance.now() - started) / 1000);
      if (span.isRecording()) {
        span.setAttribute("rpc.grpc.status_code", code ?? 0);
        if (code !== undefined) {
          span.setAttribute("rpc.connect_rpc.error_code", codeLabel(code));
          span.setStatus({ code: SpanStatusCode.ERROR, message: codeLabel(code) });
        }
      }
      span.end();
    };
    const ctx = trace.setSpan(tracing.active(), span);
    try {
      const res = await tracing.with(ctx, () => next(req));
      if (!res.stream) {
        done(undefined);
        return res;
      }
      const message = tracing.enabled ? withContext(res.message, tracing, ctx) : res.message;
      return { ...res, message: observe(message, done) };
    } catch (e) {
      done(e);
      throw e;
    }
  };
}

/** Logs one line per call: debug when OK, warn for a caller's error, error for a server fault. */
export function loggingInterceptor(log: Logger): Interceptor {
  return (next) => async (req) => {
    const span = req.contextValues.get(spanKey);
    const requestId = req.contextValues.get(requestIdKey);
    // The child logger is made when the call first logs: an OK call at the default level logs
    // nothing, and pino's child() serializes (and redacts) its bindings on every call.
    let callLog: Logger | undefined;
    const callLogger = (): Logger =>
      (callLog ??= log.child({
        requestId,
        ...(span && traceFields(span)),
        rpc: `${req.service.typeName}/${req.method.name}`,
      }));
    req.contextValues.set(loggerKey, callLogger);
    const started = performance.now();
    try {
      const res = await next(req);
      if (!res.stream) {
        logOutcome(log, callLogger, undefined, started);
        return res;
      }
      return { ...res, message: observe(res.message, (e) => logOutcome(log, callLogger, e, started)) };
    } catch (e) {
      logOutcome(log, callLogger, e, started);
      throw e;
    }
  };
}

/** Maps whatever a handler throws, before or during a stream, through toConnectError. */
export function errorMappingInterceptor(): Interceptor {
  return (next) => async (req) => {
    const log = () => req.contextValues.get(loggerKey)();
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
    // Not AbortSignal.any, whose WeakRefs keep every call's objects alive past minor GCs (signals.ts).
    const linked = linkSignals(req.signal, deadline.signal);
    try {
      // The time left also bounds the call's SQL (statement_timeout): see src/shard/deadline.ts.
      return await withDeadline(Date.now() + ms, () =>
        raceAbort(next({ ...req, signal: linked.signal }), deadline.signal),
      );
    } finally {
      clearTimeout(timer);
      linked.dispose();
    }
  };
}

function logOutcome(log: Logger, callLog: () => Logger, error: unknown, started: number): void {
  const code = error === undefined ? undefined : ConnectError.from(error).code;
  if (code === undefined && !log.isLevelEnabled("debug")) return;
  const fields = {
    code: code === undefined ? "ok" : Code[code],
    ms: Math.round(performance.now() - started),
  };
  if (code === undefined) callLog().debug(fields, "call ok");
  else if (code === Code.Internal || code === Code.Unknown || code === Code.DataLoss)
    callLog().error(fields, "call failed");
  else callLog().warn({ ...fields, message: ConnectError.from(error).rawMessage }, "call failed");
}

/** Passes a stream through and reports how it ended: undefined when complete, else the error. */
function observe<T>(source: AsyncIterable<T>, done: (error: unknown) => void): AsyncIterable<T> {
  return passThrough(source, { end: done });
}

/** How a consumer that stops reading (return()) ended the stream, for the metrics and the log. */
const abandoned = () => new ConnectError("stream abandoned by the caller", Code.Canceled);

/** What passThrough does on the way: `end` is told once how the stream ended; `mapError` maps errors. */
interface PassThroughHooks {
  end?: (error: unknown) => void;
  mapError?: (error: unknown) => unknown;
}

/**
 * A stream passed through unchanged, with `end` told once how it ended (undefined when complete, the
 * (mapped) error when it failed, CANCELED when the consumer stopped reading) and the source's errors
 * mapped by `mapError`. What `async function* (…) { try { yield* source } catch … finally … }` does,
 * for less: with thousands of open watch streams, each one's pending read (made at every item) lives
 * until its next item, past minor GCs, so what a read allocates is copied and promoted, and what a
 * stream keeps is kept thousands of times. Measured under tsx, a generator layer keeps ~320 bytes
 * per pending read and ~300 per stream; this one ~125 and ~220 (a class with two handlers made once,
 * not named closures: under tsx every named closure also gets its own `name` property;
 * docs/performance.md, step 13).
 */
export function passThrough<T>(source: AsyncIterable<T>, hooks: PassThroughHooks): AsyncIterable<T> {
  return { [Symbol.asyncIterator]: () => new PassThrough(source[Symbol.asyncIterator](), hooks) };
}

class PassThrough<T> implements AsyncIterator<T> {
  private ended = false;
  /** A read's handlers, made once per stream (so a read allocates only its promise). */
  private readonly onResult: (r: IteratorResult<T>) => IteratorResult<T>;
  private readonly onError: (e: unknown) => never;

  constructor(
    private readonly it: AsyncIterator<T>,
    private readonly hooks: PassThroughHooks,
  ) {
    // Assigned, not declared as named consts or field initializers: tsx (esbuild keepNames) gives
    // each named closure a `name` property of its own, which costs more than the closure.
    this.onResult = (r) => {
      if (r.done) this.end(undefined);
      return r;
    };
    this.onError = (e) => this.fail(e);
  }

  next(): Promise<IteratorResult<T>> {
    if (this.ended) return Promise.resolve({ done: true, value: undefined });
    try {
      return this.it.next().then(this.onResult, this.onError);
    } catch (e) {
      return Promise.reject(e).catch(this.onError);
    }
  }

  return(value?: unknown): Promise<IteratorResult<T>> {
    if (this.ended) return Promise.resolve({ done: true, value });
    if (this.it.return === undefined) {
      this.end(abandoned());
      return Promise.resolve({ done: true, value });
    }
    return this.settle(this.it, "return", value);
  }

  throw(e?: unknown): Promise<IteratorResult<T>> {
    if (this.ended) return Promise.reject(e);
    if (this.it.throw === undefined) {
      // As yield* does with a source that cannot take an error: stop it, then fail with the error.
      return Promise.resolve(this.it.return?.())
        .then(() => Promise.reject(e))
        .catch((error: unknown) => this.fail(error));
    }
    return this.settle(this.it, "throw", e);
  }

  private settle(it: AsyncIterator<T>, step: "next" | "return" | "throw", arg: unknown) {
    let p: Promise<IteratorResult<T>>;
    try {
      p = (it[step] as (arg?: unknown) => Promise<IteratorResult<T>>).call(it, arg);
    } catch (e) {
      return Promise.reject(e).catch((error: unknown) => this.fail(error));
    }
    return p.then(
      (r) => {
        // A source that finished (or was stopped by return) ends the stream here.
        if (r.done) this.end(step === "return" ? abandoned() : undefined);
        return r;
      },
      (error: unknown) => this.fail(error),
    );
  }

  private fail(e: unknown): never {
    const error = this.hooks.mapError ? this.hooks.mapError(e) : e;
    this.end(error);
    throw error;
  }

  private end(error: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.hooks.end?.(error);
  }
}

/** Pulls every item of `source` with `ctx` active: a stream handler runs on its consumer's pulls. */
function withContext<T>(source: AsyncIterable<T>, tracing: Tracing, ctx: Context): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator]() {
      const it = tracing.with(ctx, () => source[Symbol.asyncIterator]());
      return {
        next: () => tracing.with(ctx, () => it.next()),
        return: (value?: unknown) =>
          tracing.with(ctx, () => it.return?.(value) ?? Promise.resolve({ done: true, value: undefined })),
        throw: (e?: unknown) => tracing.with(ctx, () => it.throw?.(e) ?? Promise.reject(e)),
      } as AsyncIterator<T>;
    },
  };
}

/** The rpc.system of the call's protocol, from its content type. */
function rpcSystem(header: Headers): string {
  return header.get("content-type")?.startsWith("application/grpc") ? "grpc" : "connect_rpc";
}

function mapErrors<T>(source: AsyncIterable<T>, log: () => Logger): AsyncIterable<T> {
  return passThrough(source, { mapError: (e) => toConnectError(e, log()) });
}

/** Settles like `p`, unless `signal` aborts first: then rejects with the abort reason. */
function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
