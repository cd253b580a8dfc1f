/**
 * The services a `routes(router)` callback registers, recorded once so that both servers (connect-node
 * on the main port, grpc-js on the native gRPC port) serve the very same implementation objects.
 */
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import {
  type ConnectRouter,
  createMethodImplSpec,
  createServiceImplSpec,
  type MethodImpl,
  type MethodImplSpec,
  type ServiceImpl,
} from "@connectrpc/connect";

type HandlerOptions = Parameters<ConnectRouter["service"]>[2];

/** One `router.service(…)` or `router.rpc(…)` call, as it was made. */
export type Registration =
  | {
      kind: "service";
      service: DescService;
      impl: Partial<ServiceImpl<DescService>>;
      options: HandlerOptions;
    }
  | { kind: "rpc"; method: DescMethod; impl: MethodImpl<DescMethod>; options: HandlerOptions };

/** Runs `routes` against a router that only records what is registered on it. */
export function recordRoutes(routes: (router: ConnectRouter) => void): Registration[] {
  const recorded: Registration[] = [];
  const recorder: ConnectRouter = {
    handlers: [],
    service(service, impl, options) {
      recorded.push({
        kind: "service",
        service,
        impl: impl as Partial<ServiceImpl<DescService>>,
        options,
      });
      return recorder;
    },
    rpc(method, impl, options) {
      recorded.push({ kind: "rpc", method, impl: impl as MethodImpl<DescMethod>, options });
      return recorder;
    },
  };
  routes(recorder);
  return recorded;
}

/** Makes the same registrations on a real router (the connect-node server's). */
export function replayRoutes(registrations: readonly Registration[], router: ConnectRouter): void {
  for (const r of registrations) {
    if (r.kind === "service") router.service(r.service, r.impl, r.options);
    else router.rpc(r.method, r.impl, r.options);
  }
}

/**
 * Every registered method as connect would call it, by gRPC path (`/pkg.Service/Method`): its
 * implementation bound to its service object, or, for a method left out, one that throws
 * UNIMPLEMENTED (connect's own `createServiceImplSpec`). A later registration of a path wins.
 */
export function methodSpecs(registrations: readonly Registration[]): Map<string, MethodImplSpec> {
  const specs = new Map<string, MethodImplSpec>();
  for (const r of registrations) {
    const methods =
      r.kind === "service"
        ? Object.values(createServiceImplSpec(r.service, r.impl).methods)
        : [createMethodImplSpec(r.method, r.impl)];
    for (const spec of methods) specs.set(`/${spec.method.parent.typeName}/${spec.method.name}`, spec);
  }
  return specs;
}
