/**
 * grpc.health.v1.Health: the serving status of the process ("") and of each served service.
 * Everything starts NOT_SERVING; the app sets SERVING once it can take traffic (after migrations),
 * and drain sets everything NOT_SERVING again, then ends every Watch.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import {
  Health,
  type HealthCheckRequest,
  type HealthCheckResponse,
  HealthCheckResponseSchema,
  HealthListResponseSchema,
  HealthCheckResponse_ServingStatus as Status,
} from "../../gen/grpc/health/v1/health_pb.js";

/** The statuses an app may set; UNKNOWN and SERVICE_UNKNOWN belong to the protocol only. */
export type HealthStatus = "SERVING" | "NOT_SERVING";

/** The serving status of the process and its services, shared by Check, Watch and List. */
export interface HealthState {
  /** Sets the status of one service ("" = the whole process); an unknown name becomes known. SERVING is ignored once draining. */
  set(service: string, status: HealthStatus): void;
  /** Sets every known service, and the process, to `status`. */
  setAll(status: HealthStatus): void;
  /** The status of a service, or undefined when the name is unknown. */
  get(service: string): HealthStatus | undefined;
  /** Every known service name, "" included. */
  names(): string[];
  /** Calls `listener` after every change; returns the unsubscribe function. */
  subscribe(listener: () => void): () => void;
  /** Aborted when the server drains: every Watch ends on it. */
  readonly shutdownSignal: AbortSignal;
}

/**
 * Creates the state with "" and every name in `services` NOT_SERVING. When `shutdownSignal` aborts,
 * everything turns NOT_SERVING (so watchers see it) before the watches end.
 */
export function createHealthState(services: Iterable<string>, shutdownSignal: AbortSignal): HealthState {
  const statuses = new Map<string, HealthStatus>([["", "NOT_SERVING"]]);
  for (const s of services) statuses.set(s, "NOT_SERVING");
  const listeners = new Set<() => void>();
  const notify = () => {
    for (const l of listeners) l();
  };
  const state: HealthState = {
    set(service, status) {
      // Once draining, nothing may advertise SERVING again: load balancers must keep away.
      if (statuses.get(service) === status || (shutdownSignal.aborted && status === "SERVING")) return;
      statuses.set(service, status);
      notify();
    },
    setAll(status) {
      if (shutdownSignal.aborted && status === "SERVING") return;
      for (const key of statuses.keys()) statuses.set(key, status);
      notify();
    },
    get: (service) => statuses.get(service),
    names: () => [...statuses.keys()],
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    shutdownSignal,
  };
  shutdownSignal.addEventListener("abort", () => state.setAll("NOT_SERVING"), { once: true });
  return state;
}

/** Registers grpc.health.v1.Health on the router, answering from `state`. */
export function registerHealth(router: ConnectRouter, state: HealthState): void {
  router.service(Health, {
    check(req) {
      const status = state.get(req.service);
      if (status === undefined) throw new ConnectError(`unknown service ${req.service}`, Code.NotFound);
      return response(status);
    },
    watch: (req, ctx) => watch(state, req, ctx),
    list() {
      const statuses: Record<string, HealthCheckResponse> = {};
      for (const name of state.names()) statuses[name] = response(state.get(name));
      return create(HealthListResponseSchema, { statuses });
    },
  });
}

/**
 * Sends the current status, then every change, until the caller goes away or the server drains.
 * Rapid flips may be coalesced into the latest status, as the health protocol allows.
 */
async function* watch(state: HealthState, req: HealthCheckRequest, ctx: HandlerContext) {
  let last: Status | undefined;
  for (;;) {
    const current = toProto(state.get(req.service));
    if (current !== last) {
      last = current;
      yield create(HealthCheckResponseSchema, { status: current });
    }
    // Checked after yielding so the NOT_SERVING set by drain reaches the watcher before the end.
    if (state.shutdownSignal.aborted || ctx.signal.aborted) return;
    await nextChange(state, ctx.signal);
  }
}

/** Resolves on the next status change, on drain, or when `signal` aborts, whichever comes first. */
function nextChange(state: HealthState, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      unsubscribe();
      signal.removeEventListener("abort", done);
      state.shutdownSignal.removeEventListener("abort", done);
      resolve();
    };
    const unsubscribe = state.subscribe(done);
    signal.addEventListener("abort", done);
    state.shutdownSignal.addEventListener("abort", done);
  });
}

function response(status: HealthStatus | undefined): HealthCheckResponse {
  return create(HealthCheckResponseSchema, { status: toProto(status) });
}

function toProto(status: HealthStatus | undefined): Status {
  if (status === undefined) return Status.SERVICE_UNKNOWN;
  return status === "SERVING" ? Status.SERVING : Status.NOT_SERVING;
}
