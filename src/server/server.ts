/**
 * The RPC server: the app's routes plus health and reflection, over Connect, gRPC and gRPC-Web on
 * one plaintext port, with the interceptors every call goes through and a graceful drain; optionally
 * the same again over native gRPC (grpc-js) on a second port.
 */
import type { DescService } from "@bufbuild/protobuf";
import { type ConnectRouter, createContextValues, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Logger } from "pino";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import type { Metrics } from "../observability/metrics.js";
import { createTracing, type Tracing } from "../observability/tracing.js";
import { pickRequestId, requestIdHeader, requestIdKey, shutdownSignalKey } from "./context.js";
import { type NodeHandler, withCors } from "./cors.js";
import { composeGate, type RequestGate } from "./gate.js";
import { type NativeGrpcServer, startNativeGrpc } from "./grpc-native.js";
import { createHealthState, type HealthState, registerHealth } from "./health.js";
import {
  deadlineInterceptor,
  errorMappingInterceptor,
  loggingInterceptor,
  observationInterceptor,
} from "./interceptors.js";
import { createOnePort } from "./one-port.js";
import { registerReflection } from "./reflection.js";
import { recordRoutes, replayRoutes } from "./registrations.js";

export { loggerKey, requestIdKey, shutdownSignalKey } from "./context.js";

/** What the server needs from the app. */
export interface ServerOptions {
  host: string;
  /** 0 picks a free port; RunningServer.port tells which. */
  port: number;
  /**
   * The native gRPC port (grpc-js, grpc-native.ts): the same services, gate and interceptors, gRPC
   * only, at a fraction of the CPU per call. 0 picks a free port; null or unset: none.
   */
  grpcPort?: number | null;
  /** Registers the shop services this process serves (the app decides which). */
  routes: (router: ConnectRouter) => void;
  /** The shop services `routes` registers, for health and reflection. */
  servedServices: DescService[];
  /** Browser origins allowed to call; [] sends no CORS headers at all. */
  corsOrigins: string[];
  /** Largest request message accepted (RESOURCE_EXHAUSTED beyond). */
  maxRequestBytes: number;
  /** Deadline of a unary call whose caller sets none. */
  defaultTimeoutMs: number;
  /** Caller deadlines of unary calls are capped at this. */
  maxTimeoutMs: number;
  logger: Logger;
  /** Served at GET /metrics and fed by every call; unset, there is no /metrics. */
  metrics?: Metrics;
  /** Trace context and server spans; unset, tracing is off (trace ids from callers still reach the logs). */
  tracing?: Tracing;
  /**
   * Runs before each call's request body is read (after the request id is set): authentication.
   * Throw to reject; errors go through errors.ts. Unset: no gate (in-process tests of the server).
   */
  requestGate?: RequestGate;
  /** Innermost interceptors, after the built-in ones (e.g. access rules on the parsed request). */
  interceptors?: Interceptor[];
}

/** A server that is listening. */
export interface RunningServer {
  /** The bound port. */
  port: number;
  /** The bound native gRPC port; null when there is none. */
  grpcPort: number | null;
  health: HealthState;
  /** Aborted when drain starts: stream handlers end on it (also in ctx.values via shutdownSignalKey). */
  shutdownSignal: AbortSignal;
  /**
   * Health NOT_SERVING, stop accepting (both ports), let in-flight calls finish while streams end on
   * shutdownSignal, GOAWAY h2 sessions, close idle HTTP/1.1 connections; after `graceMs` destroy
   * whatever remains.
   */
  drain(graceMs: number): Promise<void>;
}

/**
 * Largest response message. gRPC clients refuse messages over 4 MiB by default, so a larger answer
 * would fail on the client anyway; failing here names the cause in our log instead.
 */
const maxResponseBytes = 4 * 1024 * 1024;
/** connect arms a setTimeout with the caller's deadline; Node fires longer timers after 1 ms. */
const maxTimerMs = 2 ** 31 - 1;

/** Starts listening; health stays NOT_SERVING until the app sets SERVING. */
export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const log = opts.logger;
  const shutdown = new AbortController();
  const health = createHealthState(
    opts.servedServices.map((s) => s.typeName),
    shutdown.signal,
  );
  const servedWithHealth = [...opts.servedServices, Health];
  // Recorded once, so both ports serve the very same implementation objects.
  const registrations = recordRoutes((router) => {
    opts.routes(router);
    registerHealth(router, health);
    registerReflection(router, servedWithHealth);
  });
  const requestGate = composeGate(opts.requestGate, log);
  const interceptors = [
    observationInterceptor({
      tracing: opts.tracing ?? createTracing({ exporter: "none", endpoint: "", serviceName: "" }),
      ...(opts.metrics && { metrics: opts.metrics }),
    }),
    loggingInterceptor(log),
    errorMappingInterceptor(),
    deadlineInterceptor({ defaultTimeoutMs: opts.defaultTimeoutMs, maxTimeoutMs: opts.maxTimeoutMs }),
    ...(opts.interceptors ?? []),
  ];
  const contextValues = (requestId: string | string[] | undefined) =>
    createContextValues().set(requestIdKey, pickRequestId(requestId)).set(shutdownSignalKey, shutdown.signal);
  const handler = connectNodeAdapter({
    routes: (router) => replayRoutes(registrations, router),
    // All three protocols are on by default; Connect JSON and binary both.
    // Connect requests must state their protocol version (header, or ?connect=v1 on GET), so a
    // plain cross-site form post or <img> GET is refused before a handler runs.
    requireConnectProtocolHeader: true,
    readMaxBytes: opts.maxRequestBytes,
    writeMaxBytes: maxResponseBytes,
    maxTimeoutMs: maxTimerMs,
    // Deliberately no `shutdownSignal` here: connect would abort every in-flight call on drain,
    // unary ones included. Streams learn of drain through shutdownSignalKey instead.
    requestGate,
    interceptors,
    contextValues: (req) => contextValues(req.headers[requestIdHeader]),
  });
  const rpc = withCors(opts.corsOrigins, handler);
  const server = createOnePort({ handler: opts.metrics ? withMetrics(opts.metrics, rpc, log) : rpc, log });
  const port = await server.listen(opts.port, opts.host);
  log.info({ host: opts.host, port }, "listening");
  let native: NativeGrpcServer | undefined;
  if (opts.grpcPort !== undefined && opts.grpcPort !== null) {
    native = await startNativeGrpc({
      host: opts.host,
      port: opts.grpcPort,
      registrations,
      requestGate,
      interceptors,
      contextValues: (header) => contextValues(header[requestIdHeader]),
      maxRequestBytes: opts.maxRequestBytes,
      maxResponseBytes,
      log,
    }).catch(async (e: unknown) => {
      await server.close(0);
      throw e;
    });
    log.info({ host: opts.host, grpcPort: native.port }, "listening for native gRPC");
  }
  let drained: Promise<void> | undefined;
  return {
    port,
    grpcPort: native?.port ?? null,
    health,
    shutdownSignal: shutdown.signal,
    drain(graceMs) {
      drained ??= drain(graceMs);
      return drained;
    },
  };

  async function drain(graceMs: number): Promise<void> {
    log.info({ graceMs }, "draining");
    shutdown.abort(); // health turns NOT_SERVING, watches and app streams start ending
    await Promise.all([server.close(graceMs), native?.drain(graceMs)]);
    log.info("drained");
  }
}

/**
 * GET /metrics (Prometheus text format) ahead of the RPC routes, on HTTP/1.1 and h2c alike. Not
 * authenticated: scrape it from inside the mesh and keep it off any public ingress.
 */
function withMetrics(metrics: Metrics, next: NodeHandler, log: Logger): NodeHandler {
  return (req, res) => {
    if (req.method !== "GET" || (req.url !== "/metrics" && !req.url?.startsWith("/metrics?"))) {
      next(req, res);
      return;
    }
    metrics.render().then(
      ({ contentType, body }) => {
        res.statusCode = 200;
        res.setHeader("Content-Type", contentType);
        res.setHeader("Cache-Control", "no-store");
        res.end(body);
      },
      (err: unknown) => {
        log.error({ err }, "rendering /metrics failed");
        res.statusCode = 500;
        res.end();
      },
    );
  };
}
