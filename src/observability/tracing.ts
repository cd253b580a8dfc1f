/**
 * OpenTelemetry tracing, one tracer provider and one context manager per app (nothing is registered
 * globally, so several apps in one process keep their spans apart). The W3C `traceparent` of an
 * incoming call is always read: its trace id reaches the logs even with tracing off. With tracing off
 * (OTEL_EXPORTER=none) no span is ever created and nothing runs per SQL statement.
 */
import {
  type Attributes,
  type Context,
  INVALID_SPAN_CONTEXT,
  isSpanContextValid,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  SimpleSpanProcessor,
  type SpanExporter,
  TracerProvider,
} from "@opentelemetry/sdk-trace";

export type { SpanExporter } from "@opentelemetry/sdk-trace";

/** How the app traces. */
export interface TracingOptions {
  exporter: "none" | "otlp";
  /** OTLP/HTTP base URL (spans go to `<endpoint>/v1/traces`). */
  endpoint: string;
  serviceName: string;
  /** Tests: export every span at once to this exporter, whatever `exporter` says. */
  spanExporter?: SpanExporter;
}

/** The app's tracing. Every method is cheap when `enabled` is false. */
export interface Tracing {
  readonly enabled: boolean;
  /** The trace context a caller sent (`traceparent`, `tracestate`), or the root context. */
  extract(headers: Headers): Context;
  /** Starts a span of `kind` under `parent`; with tracing off, a non-recording span that keeps `parent`'s ids. */
  startSpan(name: string, kind: SpanKind, attributes: Attributes, parent: Context): Span;
  /** The context of the running async call chain (root when tracing is off). */
  active(): Context;
  /** Runs `fn` with `ctx` as the active context of everything it awaits. */
  with<T>(ctx: Context, fn: () => T): T;
  /** A span around one SQL statement on `shard`: never the parameter values, which may be personal data. */
  traceQuery<T>(shard: number, sql: string, run: () => Promise<T>): Promise<T>;
  /** Flushes pending spans and stops exporting. */
  shutdown(): Promise<void>;
}

const propagator = new W3CTraceContextPropagator();
const headersGetter = {
  keys: (carrier: Headers) => [...carrier.keys()],
  get: (carrier: Headers, key: string) => carrier.get(key) ?? undefined,
};
/** Long statements (bulk inserts) are cut: the shape is what a trace needs. */
const maxStatementChars = 2048;

/** Creates the app's tracing from its settings. */
export function createTracing(options: TracingOptions): Tracing {
  const extract = (headers: Headers) => propagator.extract(ROOT_CONTEXT, headers, headersGetter);
  if (options.exporter === "none" && options.spanExporter === undefined) return disabledTracing(extract);

  const exporter = options.spanExporter ?? new OTLPTraceExporter({ url: `${options.endpoint}/v1/traces` });
  const processor =
    options.spanExporter !== undefined
      ? new SimpleSpanProcessor({ exporter })
      : new BatchSpanProcessor({ exporter });
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ "service.name": options.serviceName }),
    // A caller's sampling decision wins; calls without a parent are all traced.
    sampler: new ParentBasedSampler({ root: new AlwaysOnSampler() }),
    spanProcessors: [processor],
  });
  const tracer: Tracer = provider.getTracer("shop-mesh");
  const contexts = new AsyncLocalStorageContextManager().enable();

  return {
    enabled: true,
    extract,
    startSpan: (name, kind, attributes, parent) => tracer.startSpan(name, { kind, attributes }, parent),
    active: () => contexts.active(),
    with: (ctx, fn) => contexts.with(ctx, fn),
    async traceQuery(shard, sql, run) {
      const parent = contexts.active();
      // Statements outside any call (sweeper, reconcile) are not traced: they would each be a root.
      if (trace.getSpan(parent) === undefined) return run();
      const operation = /^\s*(\w+)/.exec(sql)?.[1]?.toUpperCase() ?? "SQL";
      const span = tracer.startSpan(
        `${operation} shard-${shard}`,
        {
          kind: SpanKind.CLIENT,
          attributes: {
            "db.system": "postgresql",
            "db.system.name": "postgresql",
            "db.operation.name": operation,
            "db.query.text": sql.length > maxStatementChars ? `${sql.slice(0, maxStatementChars)}…` : sql,
            "shop.shard.index": shard,
          },
        },
        parent,
      );
      try {
        return await run();
      } catch (e) {
        // The error's message may quote values (a unique key's detail): only its type is recorded.
        span.setStatus({ code: SpanStatusCode.ERROR, message: e instanceof Error ? e.name : "error" });
        throw e;
      } finally {
        span.end();
      }
    },
    async shutdown() {
      await provider.shutdown();
      contexts.disable();
    },
  };
}

function disabledTracing(extract: (headers: Headers) => Context): Tracing {
  return {
    enabled: false,
    extract,
    // The no-op behaviour of the OTel API: the caller's ids, nothing recorded.
    startSpan: (_name, _kind, _attributes, parent) =>
      trace.wrapSpanContext(trace.getSpanContext(parent) ?? INVALID_SPAN_CONTEXT),
    active: () => ROOT_CONTEXT,
    with: (_ctx, fn) => fn(),
    traceQuery: (_shard, _sql, run) => run(),
    shutdown: async () => undefined,
  };
}

/** `trace_id` and `span_id` for a log line, or nothing when the context carries no valid trace. */
export function traceFields(span: Span): { trace_id: string; span_id: string } | undefined {
  const sc = span.spanContext();
  return isSpanContextValid(sc) ? { trace_id: sc.traceId, span_id: sc.spanId } : undefined;
}
