/**
 * Who is calling: the verified claims of the caller's bearer token, reduced to what access rules
 * need. Set by the auth gate before the request body is read; read by the access interceptor and by
 * handlers (e.g. the actor recorded in an order's history).
 */
import { createContextKey } from "@connectrpc/connect";

/** An authenticated caller. */
export interface Principal {
  /** The token's `sub`: the user id this caller acts as (picks its shard for buyer-owned rows). */
  readonly subject: string;
  /** `operator` scope: may do everything, including cross-shard lists and the invariant check. */
  readonly operator: boolean;
  /** `service` scope: a service-to-service caller that may act for any user id named in a request. */
  readonly service: boolean;
}

/** Scope names in the token's space-separated `scope` claim. */
export const OPERATOR_SCOPE = "operator";
export const SERVICE_SCOPE = "service";

/** The call's principal; undefined only where no auth runs (health, reflection, in-memory tests). */
export const principalKey = createContextKey<Principal | undefined>(undefined, {
  description: "authenticated caller",
});

/** The actor recorded for a change made by `p` (a user id, or the calling service's own id). */
export function actorOf(p: Principal | undefined, fallback: string): string {
  return p?.subject ?? fallback;
}
