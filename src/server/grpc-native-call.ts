/**
 * One call on the native gRPC port, run the way connect runs it (mirrors
 * @connectrpc/connect protocol/invoke-implementation.js): the interceptors wrap a function that calls
 * the implementation with a connect HandlerContext, first interceptor outermost; a handler's plain
 * object answer is normalized with `create(method.output, …)`. Errors become a gRPC status the way
 * connect's gRPC protocol writes it: code, raw message, google.rpc.Status in grpc-status-details-bin.
 */
import { create, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type createHandlerContext,
  type HandlerContext,
  type Interceptor,
  type MethodImplSpec,
  type StreamRequest,
  type StreamResponse,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import * as grpc from "@grpc/grpc-js";

type Message = MessageShape<DescMessage>;
type AnyFn = (req: UnaryRequest | StreamRequest) => Promise<UnaryResponse | StreamResponse>;
type Status = Pick<grpc.StatusObject, "code" | "details" | "metadata">;

/**
 * A call's connect context, and whether its outcome is settled on the wire. Unlike connect, a call
 * that ends well does not abort ctx.signal afterwards (nothing is left listening then, and an abort
 * with its event dispatch is a measurable share of a call); cancels, deadlines and errors do abort it.
 */
export interface NativeCall {
  readonly ctx: ReturnType<typeof createHandlerContext>;
  /** Answered, failed, or gone (cancelled, past its deadline): nothing more is sent. */
  settled: boolean;
}

/** Finds the NativeCall the gate interceptor opened for a call's metadata. */
export type CallLookup = (metadata: grpc.Metadata) => NativeCall | undefined;

const noCall: Status = {
  code: grpc.status.INTERNAL,
  details: "internal error",
  metadata: new grpc.Metadata(),
};

/** The grpc-js handler of a unary method. */
export function unaryHandler(
  spec: MethodImplSpec,
  interceptors: readonly Interceptor[],
  callOf: CallLookup,
): grpc.handleUnaryCall<Message, Message> {
  return (call, callback) => {
    const c = callOf(call.metadata);
    if (c === undefined) return callback(noCall);
    const { ctx } = c;
    const req = { ...requestCommon(spec, ctx), stream: false, message: call.request } as UnaryRequest;
    const next = chain(spec, ctx, interceptors);
    next(req).then(
      (res) => {
        if (settle(c)) return;
        call.sendMetadata(toMetadata(res.header));
        callback(null, res.message as Message, toMetadata(res.trailer));
      },
      (e: unknown) =>
        fail(c, e, (status) => {
          call.sendMetadata(toMetadata(ctx.responseHeader));
          callback(status);
        }),
    );
  };
}

/**
 * The grpc-js handler of a streaming method. Server streams get their one request message from
 * grpc-js; client and bidi streams read the call. Output respects backpressure and stops when the
 * call is settled (the caller cancelled, the deadline passed).
 */
export function streamHandler(
  spec: MethodImplSpec,
  interceptors: readonly Interceptor[],
  callOf: CallLookup,
): grpc.handleBidiStreamingCall<Message, Message> & grpc.handleServerStreamingCall<Message, Message> {
  return (call: OutputStream) => {
    const c = callOf(call.metadata);
    if (c === undefined) {
      call.emit("error", noCall);
      return;
    }
    const input =
      spec.kind === "server_streaming"
        ? one((call as grpc.ServerWritableStream<Message, Message>).request)
        : ((call as grpc.ServerDuplexStream<Message, Message>).iterator({
            destroyOnReturn: false,
          }) as AsyncIterable<Message>);
    const req = { ...requestCommon(spec, c.ctx), stream: true, message: input } as StreamRequest;
    void pump(call, c, chain(spec, c.ctx, interceptors)(req) as Promise<StreamResponse>);
  };
}

type OutputStream = grpc.ServerWritableStream<Message, Message> | grpc.ServerDuplexStream<Message, Message>;

async function pump(call: OutputStream, c: NativeCall, answer: Promise<StreamResponse>): Promise<void> {
  const { ctx } = c;
  let headerSent = false;
  // As connect does, the header goes out with the first message (or the end), so handlers may still set it.
  const sendHeader = (header: Headers) => {
    if (headerSent) return;
    headerSent = true;
    call.sendMetadata(toMetadata(header));
  };
  try {
    const res = await answer;
    for await (const message of res.message) {
      if (c.settled) break;
      sendHeader(res.header);
      if (!call.write(message)) await drained(call, ctx.signal);
    }
    if (settle(c)) return;
    sendHeader(res.header);
    call.end(toMetadata(res.trailer));
  } catch (e) {
    fail(c, e, (status) => {
      sendHeader(ctx.responseHeader);
      call.emit("error", status);
    });
  }
}

/**
 * Settles a failed call: anything but a ConnectError is "internal error" (the error mapping
 * interceptor has already mapped what the handlers throw; this is connect's last resort too).
 */
export function fail(c: NativeCall, e: unknown, send: (status: Status) => void): void {
  const err =
    e instanceof ConnectError
      ? e
      : new ConnectError("internal error", Code.Internal, undefined, undefined, e);
  if (settle(c)) return;
  c.ctx.abort(err);
  send(statusOf(err, c.ctx.responseTrailer));
}

/** Marks the call settled; true when it already was (then nothing may be sent). */
function settle(c: NativeCall): boolean {
  if (c.settled) return true;
  c.settled = true;
  return false;
}

/** The status of a failed call; trailers as connect's gRPC protocol writes them (details, error metadata). */
function statusOf(err: ConnectError, trailer: Headers): Status {
  // Connect's Code values are the gRPC status codes.
  const code = err.code as number as grpc.status;
  return { code, details: err.rawMessage, metadata: toMetadata(setTrailerStatus(new Headers(trailer), err)) };
}

/** The interceptors around the implementation, first interceptor outermost (connect's applyInterceptors). */
function chain(spec: MethodImplSpec, ctx: HandlerContext, interceptors: readonly Interceptor[]): AnyFn {
  let next = implementation(spec, ctx);
  for (let i = interceptors.length - 1; i >= 0; i--) next = (interceptors[i] as Interceptor)(next);
  return next;
}

/** What connect's invoke-implementation hands the innermost `next` for each kind of method. */
function implementation(spec: MethodImplSpec, ctx: HandlerContext): AnyFn {
  const common = { service: spec.method.parent, header: ctx.responseHeader, trailer: ctx.responseTrailer };
  const output = spec.method.output;
  switch (spec.kind) {
    case "unary":
      return async (req) => ({
        ...common,
        stream: false,
        method: spec.method,
        message: create(output, await spec.impl(req.message as Message, merge(ctx, req))),
      });
    case "server_streaming":
      return async (req) => ({
        ...common,
        stream: true,
        method: spec.method,
        message: normalize(
          output,
          spec.impl(await single(req.message as AsyncIterable<Message>), merge(ctx, req)),
        ),
      });
    case "client_streaming":
      return async (req) => ({
        ...common,
        stream: true,
        method: spec.method,
        message: one(create(output, await spec.impl(req.message as AsyncIterable<Message>, merge(ctx, req)))),
      });
    case "bidi_streaming":
      return async (req) => ({
        ...common,
        stream: true,
        method: spec.method,
        message: normalize(output, spec.impl(req.message as AsyncIterable<Message>, merge(ctx, req))),
      });
  }
}

function requestCommon(spec: MethodImplSpec, ctx: HandlerContext) {
  return {
    service: spec.method.parent,
    method: spec.method,
    requestMethod: ctx.requestMethod,
    url: ctx.url,
    signal: ctx.signal,
    header: ctx.requestHeader,
    contextValues: ctx.values,
  } as const;
}

/** The context a handler sees: what the interceptors made of the request (connect's mergeRequest). */
function merge(ctx: HandlerContext, req: UnaryRequest | StreamRequest): HandlerContext {
  return {
    ...ctx,
    service: req.service,
    requestHeader: req.header,
    signal: req.signal,
    values: req.contextValues,
  };
}

/** The one request message of a server stream (connect's ensureSingle). */
async function single<T>(messages: AsyncIterable<T>): Promise<T> {
  const it = messages[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done === true)
    throw new ConnectError(
      "protocol error: missing input message for server-streaming method",
      Code.Unimplemented,
    );
  const second = await it.next();
  if (second.done !== true)
    throw new ConnectError(
      "protocol error: received extra input message for server-streaming method",
      Code.Unimplemented,
    );
  return first.value;
}

async function* one<T>(message: T): AsyncIterable<T> {
  yield message;
}

async function* normalize(desc: DescMessage, source: AsyncIterable<unknown>): AsyncIterable<Message> {
  for await (const m of source) yield create(desc, m as Message);
}

/** Resolves when the stream takes writes again, or when the call's signal aborts. */
function drained(call: NodeJS.EventEmitter, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      call.off("drain", done);
      signal.removeEventListener("abort", done);
      resolve();
    };
    call.on("drain", done);
    signal.addEventListener("abort", done);
  });
}

/** Set by grpc-js itself, or meaningless on a gRPC answer. */
const protocolHeaders = new Set([
  "content-type",
  "content-length",
  "content-encoding",
  "grpc-status",
  "grpc-message",
  "grpc-encoding",
  "grpc-accept-encoding",
  "te",
  "trailer",
  "transfer-encoding",
  "connection",
]);

/** Response headers or trailers as grpc-js metadata; `-bin` values are base64 in Headers, bytes here. */
export function toMetadata(headers: Headers): grpc.Metadata {
  const metadata = new grpc.Metadata();
  headers.forEach((value, key) => {
    if (protocolHeaders.has(key)) return;
    try {
      metadata.set(key, key.endsWith("-bin") ? Buffer.from(value, "base64") : value);
    } catch {
      // A value grpc-js refuses as metadata (not printable ASCII) is left out rather than failing the call.
    }
  });
  return metadata;
}

/**
 * Request metadata as the header record connect would see. grpc-js has already removed its transport
 * headers (content-type, grpc-timeout, te, …); content-type is put back so the call reads as gRPC.
 * `-bin` values come back base64, as on the main port.
 */
export function headerRecord(metadata: grpc.Metadata): Record<string, string> {
  const out: Record<string, string> = { "content-type": "application/grpc+proto" };
  for (const [key, value] of Object.entries(metadata.toHttp2Headers())) {
    if (value !== undefined) out[key] = Array.isArray(value) ? value.join(", ") : String(value);
  }
  return out;
}
