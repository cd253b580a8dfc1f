/**
 * The native gRPC port: the services, request gate and interceptors of the connect-node server,
 * served by @grpc/grpc-js on a port of its own (docs/server.md, "The native gRPC port"). grpc-js
 * spends about a fifth of connect-node's CPU on a gRPC call, but it owns whole HTTP/2 connections
 * and answers anything else (Connect, gRPC-Web) with 415, so it cannot share the one port.
 */
import { type DescMessage, fromBinary, type MessageShape, toBinary } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ContextValues,
  createHandlerContext,
  type Interceptor,
  type MethodImplSpec,
} from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { RequestGate } from "./gate.js";
import {
  type CallLookup,
  fail,
  headerRecord,
  type NativeCall,
  streamHandler,
  toMetadata,
  unaryHandler,
} from "./grpc-native-call.js";
import { methodSpecs, type Registration } from "./registrations.js";

/** What the native server shares with the connect-node server. */
export interface NativeGrpcOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** The connect server's registrations (recordRoutes): the same implementation objects. */
  registrations: readonly Registration[];
  /** The connect server's requestGate; here it runs once the metadata is in, before the message is read. */
  requestGate: RequestGate;
  /** The connect server's interceptors, first outermost. */
  interceptors: readonly Interceptor[];
  /** The connect server's per-call context values, from the request headers. */
  contextValues: (requestHeader: Record<string, string>) => ContextValues;
  /** Largest request message (RESOURCE_EXHAUSTED beyond). */
  maxRequestBytes: number;
  /** Largest response message. */
  maxResponseBytes: number;
  log: Logger;
}

/** A listening native gRPC server. */
export interface NativeGrpcServer {
  /** The bound port. */
  port: number;
  /** Stops accepting, sends GOAWAY and waits for open calls; after `graceMs` cancels whatever remains. */
  drain(graceMs: number): Promise<void>;
}

/** A cancel this close to the deadline is the deadline (grpc-js's timer and the wall clock differ slightly). */
const deadlineSlackMs = 10;

/** Builds the grpc-js server over the registrations and binds it. */
export async function startNativeGrpc(opts: NativeGrpcOptions): Promise<NativeGrpcServer> {
  const specs = methodSpecs(opts.registrations);
  const server = new grpc.Server({
    interceptors: [gateInterceptor(specs, opts)],
    "grpc.max_receive_message_length": opts.maxRequestBytes,
    "grpc.max_send_message_length": opts.maxResponseBytes,
    // As on the main port: bounded streams per connection, idle connections closed after 5 minutes.
    "grpc.max_concurrent_streams": 1000,
    "grpc.max_connection_idle_ms": 300_000,
    // Pings idle connections every 2 minutes, so a vanished caller's watch streams are noticed.
    "grpc.keepalive_time_ms": 120_000,
    "grpc.keepalive_timeout_ms": 20_000,
    // Channelz stays on although no channelz service is served: with "grpc.enable_channelz": 0,
    // grpc-js 1.14 does not record sessions where forceShutdown looks for them, so a drain's grace
    // period ending would leave open calls running (test/server/grpc-native-context.test.ts).
  });
  for (const methods of byService(specs)) {
    server.addService(definition(methods), implementation(methods, opts.interceptors, callOf));
  }
  const port = await bind(server, opts.host, opts.port);
  return {
    port,
    drain: (graceMs) =>
      new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          opts.log.warn("native gRPC drain grace over: cancelling open calls");
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
  };
}

/**
 * Each call's NativeCall rides on its own grpc.Metadata object (the one grpc-js hands the handler),
 * so it lives exactly as long as the call. Not a WeakMap keyed by the metadata: V8's minor GCs keep a
 * long-lived WeakMap's values alive, and with it every call's objects until the next full GC
 * (measured: scavenges twice as long, with most of a call's allocations promoted).
 */
const nativeCallKey = Symbol("shop.nativeCall");
type CarriesCall = grpc.Metadata & { [nativeCallKey]?: NativeCall };
const attachCall = (metadata: grpc.Metadata, call: NativeCall): void => {
  (metadata as CarriesCall)[nativeCallKey] = call;
};
const callOf: CallLookup = (metadata) => (metadata as CarriesCall)[nativeCallKey];

/**
 * Opens each call's connect context once its metadata is in, and runs the request gate before
 * grpc-js reads the request message (the handler only starts reading when the metadata is passed
 * on). A rejected call is answered here; a cancel (or grpc-js's own answer: deadline, size limit)
 * aborts the context so the handler stops.
 */
function gateInterceptor(
  specs: Map<string, MethodImplSpec>,
  opts: NativeGrpcOptions,
): grpc.ServerInterceptor {
  return (descriptor, next) => {
    const spec = specs.get(descriptor.path);
    let call: NativeCall | undefined;
    return new grpc.ServerInterceptingCall(next, {
      start(begin) {
        begin({
          onReceiveMetadata(metadata, pass) {
            if (spec === undefined) return pass(metadata); // unreachable: grpc-js routes known paths only
            const c = openCall(spec, metadata, next, opts);
            call = c;
            attachCall(metadata, c);
            runGate(opts.requestGate, c.ctx).then(
              () => pass(metadata),
              (e: unknown) =>
                fail(c, e, (status) => {
                  next.sendMetadata(toMetadata(c.ctx.responseHeader));
                  next.sendStatus(status);
                }),
            );
          },
          // grpc-js calls this at the end of every call; only an unsettled call was cut short.
          onCancel() {
            if (call === undefined || call.settled) return;
            call.settled = true;
            const late = deadlineOf(next) - Date.now() <= deadlineSlackMs;
            call.ctx.abort(
              late
                ? new ConnectError("the operation timed out", Code.DeadlineExceeded)
                : new ConnectError("the call was cancelled", Code.Canceled),
            );
          },
        });
      },
    });
  };
}

function openCall(
  spec: MethodImplSpec,
  metadata: grpc.Metadata,
  call: grpc.ServerInterceptingCallInterface,
  opts: NativeGrpcOptions,
): NativeCall {
  const { method } = spec;
  const requestHeader = headerRecord(metadata);
  const ctx = createHandlerContext({
    service: method.parent,
    method,
    protocolName: "grpc",
    requestMethod: "POST",
    url: `http://${call.getHost()}/${method.parent.typeName}/${method.name}`,
    requestHeader,
    contextValues: opts.contextValues(requestHeader),
  });
  // No timeoutMs above: connect would arm a timer per call to abort the context at the deadline.
  // grpc-js keeps one already and ends the call then; onCancel above aborts the context.
  const deadline = deadlineOf(call);
  if (deadline === Number.POSITIVE_INFINITY) return { ctx, settled: false };
  return { ctx: { ...ctx, timeoutMs: () => deadline - Date.now() }, settled: false };
}

async function runGate(gate: RequestGate, ctx: NativeCall["ctx"]): Promise<void> {
  await gate(ctx);
}

/** The call's deadline in epoch milliseconds; Infinity when the caller set none. */
function deadlineOf(call: grpc.ServerInterceptingCallInterface): number {
  const d = call.getDeadline();
  return d instanceof Date ? d.getTime() : d;
}

function byService(specs: Map<string, MethodImplSpec>): MethodImplSpec[][] {
  const services = new Map<string, MethodImplSpec[]>();
  for (const spec of specs.values()) {
    const name = spec.method.parent.typeName;
    services.set(name, [...(services.get(name) ?? []), spec]);
  }
  return [...services.values()];
}

type Message = MessageShape<DescMessage>;

function definition(methods: MethodImplSpec[]): grpc.ServiceDefinition {
  const def: Record<string, grpc.MethodDefinition<Message, Message>> = {};
  for (const { kind, method } of methods) {
    def[method.localName] = {
      path: `/${method.parent.typeName}/${method.name}`,
      // grpc-js runs a call by these two flags; a client stream is served as a bidi one (same wire).
      requestStream: kind === "client_streaming" || kind === "bidi_streaming",
      responseStream: kind !== "unary",
      requestSerialize: serializer(method.input),
      requestDeserialize: (bytes: Buffer) => fromBinary(method.input, bytes),
      responseSerialize: serializer(method.output),
      responseDeserialize: (bytes: Buffer) => fromBinary(method.output, bytes),
      originalName: method.name,
    };
  }
  return def;
}

function serializer(desc: DescMessage): (message: Message) => Buffer {
  return (message) => {
    const bytes = toBinary(desc, message);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

function implementation(
  methods: MethodImplSpec[],
  interceptors: readonly Interceptor[],
  callOf: CallLookup,
): grpc.UntypedServiceImplementation {
  const impl: grpc.UntypedServiceImplementation = {};
  for (const spec of methods) {
    impl[spec.method.localName] =
      spec.kind === "unary"
        ? unaryHandler(spec, interceptors, callOf)
        : streamHandler(spec, interceptors, callOf);
  }
  return impl;
}

function bind(server: grpc.Server, host: string, port: number): Promise<number> {
  const address = `${host.includes(":") ? `[${host}]` : host}:${port}`;
  return new Promise((resolve, reject) => {
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, bound) => {
      if (err) reject(new Error(`native gRPC port: cannot listen on ${address}: ${err.message}`));
      else resolve(bound);
    });
  });
}
