/**
 * Per-call values the server puts into every handler context (`ctx.values.get(key)`).
 * Kept apart from server.ts so interceptors and handlers can import them without a cycle.
 */
import { randomUUID } from "node:crypto";
import { createContextKey } from "@connectrpc/connect";
import type { Span } from "@opentelemetry/api";
import type { Logger } from "pino";
import { pino } from "pino";

/** Never aborts: the default for a context created outside the server (in-memory tests). */
const neverAborted = new AbortController().signal;

/** Aborted when the server starts draining: long-lived stream handlers must end when it fires. */
export const shutdownSignalKey = createContextKey<AbortSignal>(neverAborted, {
  description: "server shutdown signal",
});

/** The call's request id: the caller's `x-request-id` when well-formed, else a fresh UUID. */
export const requestIdKey = createContextKey<string>("", { description: "request id" });

/**
 * The call's logger: a pino child bound to the call (request id, trace ids, method), made on first
 * use; set by the logging interceptor.
 */
const disabled = pino({ enabled: false });
export const loggerKey = createContextKey<() => Logger>(() => disabled, { description: "call logger" });

/** The call's server span (non-recording with tracing off); its ids go on the call's log lines. */
export const spanKey = createContextKey<Span | undefined>(undefined, { description: "call span" });

/** Header that carries the request id in and out. */
export const requestIdHeader = "x-request-id";

const requestIdPattern = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Picks the request id for a call. A caller-chosen id is only kept when it is short and plain,
 * because it ends up in every log line of the call and must not be a log-injection vector.
 */
export function pickRequestId(header: string | string[] | undefined): string {
  const candidate = Array.isArray(header) ? header[0] : header;
  return candidate !== undefined && requestIdPattern.test(candidate) ? candidate : randomUUID();
}
