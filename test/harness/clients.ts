import type { DescService } from "@bufbuild/protobuf";
import { type Client, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { bearer, defaultTestToken } from "./auth.js";

/**
 * The transports every service suite runs over: the same calls, every protocol, real sockets. Calls
 * carry the default operator + service token (test/harness/auth.ts) unless they set `authorization`
 * themselves; `interceptors` replaces that (pass [] for calls without a token).
 */
export function transports(
  port: number,
  interceptors: Interceptor[] = [bearer()],
): Record<string, Transport> {
  const baseUrl = `http://127.0.0.1:${port}`;
  return {
    "connect-json-http1": createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors }),
    "connect-binary-h2c": createConnectTransport({
      baseUrl,
      httpVersion: "2",
      useBinaryFormat: true,
      interceptors,
    }),
    "grpc-h2c": createGrpcTransport({ baseUrl, interceptors }),
    "grpc-web-http1": createGrpcWebTransport({ baseUrl, httpVersion: "1.1", interceptors }),
  };
}

/** The two transports the functional suites run over (the protocol suite covers all four). */
export const MAIN_TRANSPORTS = ["connect-json-http1", "grpc-h2c"] as const;

const cache = new Map<string, Transport>();

/** One shared transport per protocol and port, so a suite reuses its connections. */
export function transportFor(name: string, port: number): Transport {
  const key = `${name}@${port}`;
  let t = cache.get(key);
  if (!t) {
    t = transports(port)[name];
    if (!t) throw new Error(`unknown transport ${name}`);
    cache.set(key, t);
  }
  return t;
}

export function client<T extends DescService>(service: T, transport: Transport): Client<T> {
  return createClient(service, transport);
}

/**
 * A stock @grpc/grpc-js client built from proto/ with @grpc/proto-loader: what an internal
 * microservice would use. Unary calls are promisified; longs and enums come back as strings.
 */
export function grpcJsClient(port: number, protoFile: string, serviceName: string) {
  const def = protoLoader.loadSync(protoFile, {
    includeDirs: ["proto"],
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(def);
  const ctor = serviceName
    .split(".")
    .reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], pkg) as grpc.ServiceClientConstructor;
  // Every call carries the default test token as metadata, unless it sets its own.
  const withToken: grpc.Interceptor = (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        if (metadata.get("authorization").length === 0)
          metadata.set("authorization", `Bearer ${defaultTestToken()}`);
        next(metadata, listener);
      },
    });
  const raw = new ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
    interceptors: [withToken],
  });
  const call = <Res = Record<string, unknown>>(method: string, request: object): Promise<Res> =>
    new Promise((resolve, reject) => {
      (
        raw as unknown as Record<
          string,
          (r: object, cb: (e: grpc.ServiceError | null, v: Res) => void) => void
        >
      )[method]?.call(raw, request, (err, value) => (err ? reject(err) : resolve(value)));
    });
  return { call, raw, close: () => raw.close() };
}
