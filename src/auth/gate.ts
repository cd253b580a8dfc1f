/**
 * Authentication and access for the connect server: a request gate that verifies the bearer token
 * before the request body is read (and refuses calls the token alone rules out), and an interceptor
 * that applies the request-level rules of access.ts before the handler runs.
 */
import type { HandlerContext, Interceptor } from "@connectrpc/connect";
import type { Logger } from "pino";
import { type AccessDeps, checkCaller, checkRequest, ruleFor } from "./access.js";
import { type Principal, principalKey } from "./principal.js";
import { type TokenVerifier, unauthenticated } from "./verifier.js";

/** Served without a token: probes and `buf curl --list-methods` must work for anyone who can connect. */
export const PUBLIC_SERVICES: ReadonlySet<string> = new Set([
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
]);

/** What the server needs to authenticate and authorize calls. */
export interface ServerAuth {
  /** Connect requestGate: runs after the headers arrive, before the body is read. */
  gate(ctx: HandlerContext): Promise<void>;
  /** Innermost interceptor: request-level rules (user, seller, product) on the parsed request. */
  interceptor: Interceptor;
}

const bearer = /^Bearer +([A-Za-z0-9._~+/=-]+) *$/i;

/** Builds the gate and interceptor over a verifier and the look-ups access rules need. */
export function createServerAuth(verifier: TokenVerifier, deps: AccessDeps, log: Logger): ServerAuth {
  return {
    async gate(ctx) {
      if (PUBLIC_SERVICES.has(ctx.service.typeName)) return;
      const header = ctx.requestHeader.get("authorization");
      const token = header === null ? undefined : bearer.exec(header)?.[1];
      if (token === undefined) {
        ctx.responseHeader.set("www-authenticate", "Bearer");
        throw unauthenticated(header === null ? "missing bearer token" : "invalid authorization header");
      }
      let principal: Principal;
      try {
        principal = await verifier.verify(token, log);
      } catch (e) {
        ctx.responseHeader.set("www-authenticate", 'Bearer error="invalid_token"');
        throw e;
      }
      ctx.values.set(principalKey, principal);
      checkCaller(ruleFor(`${ctx.service.typeName}/${ctx.method.name}`), principal);
    },

    interceptor: (next) => async (req) => {
      if (PUBLIC_SERVICES.has(req.service.typeName)) return next(req);
      const principal = req.contextValues.get(principalKey);
      const rule = ruleFor(`${req.service.typeName}/${req.method.name}`);
      // The gate set both for every other call; fail closed if it somehow did not run.
      if (principal === undefined) throw unauthenticated("missing bearer token");
      checkCaller(rule, principal);
      if (rule === undefined) return next(req);
      if (!req.stream) {
        await checkRequest(rule, principal, req.message as unknown as Record<string, unknown>, deps);
        return next(req);
      }
      if (req.method.methodKind !== "server_streaming") return next(req);
      // A server stream has exactly one request message: read it, check it, hand it on.
      const messages: (typeof req.message extends AsyncIterable<infer M> ? M : never)[] = [];
      for await (const m of req.message) messages.push(m);
      if (messages[0] !== undefined)
        await checkRequest(rule, principal, messages[0] as unknown as Record<string, unknown>, deps);
      return next({ ...req, message: fromArray(messages) });
    },
  };
}

async function* fromArray<T>(items: T[]): AsyncIterable<T> {
  yield* items;
}
