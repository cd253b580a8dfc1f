/**
 * Bearer JWT verification with jose: an algorithm allow-list (never `none`, never HMAC), the
 * configured issuer and audience, a required `exp` and `sub`. Keys come from a JWKS URL (fetched,
 * cached, refetched for an unknown `kid`), an inline JWKS, one PEM public key, or dev mode.
 */
import { createPublicKey, type KeyObject } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type CryptoKey,
  createLocalJWKSet,
  createRemoteJWKSet,
  errors,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
  jwtVerify,
} from "jose";
import { LRUCache } from "lru-cache";
import type { Logger } from "pino";
import { DomainError } from "../errors.js";
import { USER_ID_RULE } from "../validation.js";
import { OPERATOR_SCOPE, type Principal, SERVICE_SCOPE } from "./principal.js";

/** Turns a bearer token into a principal, or throws UNAUTHENTICATED. */
export interface TokenVerifier {
  verify(token: string, log: Logger): Promise<Principal>;
}

export interface VerifierOptions {
  /** A key, or a key set that picks by the token's header (`kid`, `alg`). */
  key: CryptoKey | KeyObject | JWTVerifyGetKey;
  issuer: string;
  audience: string;
  algorithms: readonly string[];
  /** Clock skew tolerated on `exp`/`nbf`, in seconds. */
  clockToleranceS?: number;
  /**
   * How long a verified token is remembered, in ms (never past its `exp`): 0 verifies every call.
   * Callers send the same token on call after call, and a signature check costs more CPU than the
   * rest of a small call; the price is that a key withdrawn from the key set keeps its tokens valid
   * for up to this long.
   */
  cacheMs?: number;
}

/** Distinct tokens remembered at most (LRU); a token is a few hundred bytes. */
const CACHE_ENTRIES = 10_000;

/** Verifies with jose; every failure is UNAUTHENTICATED with a generic message. */
export function createVerifier(opts: VerifierOptions): TokenVerifier {
  const options = {
    algorithms: [...opts.algorithms],
    issuer: opts.issuer,
    audience: opts.audience,
    requiredClaims: ["exp", "sub"],
    clockTolerance: opts.clockToleranceS ?? 30,
  };
  const cacheMs = opts.cacheMs ?? 60_000;
  const verified =
    cacheMs > 0 ? new LRUCache<string, Principal>({ max: CACHE_ENTRIES, ttlAutopurge: false }) : null;
  return {
    async verify(token, log) {
      const known = verified?.get(token);
      if (known !== undefined) return known;
      let payload: JWTPayload;
      try {
        // Two overloads (a key, or a key-picking function): pick one explicitly for the compiler.
        payload =
          typeof opts.key === "function"
            ? (await jwtVerify(token, opts.key, options)).payload
            : (await jwtVerify(token, opts.key, options)).payload;
      } catch (e) {
        throw rejection(e, log);
      }
      const principal = principalOf(payload, log);
      // Remembered until its exp at the latest (without the clock tolerance): `exp` is required.
      const ttl = Math.min(cacheMs, (payload.exp as number) * 1000 - Date.now());
      if (verified && ttl > 0) verified.set(token, principal, { ttl });
      return principal;
    },
  };
}

/** Keys from the settings: a JWKS URL, or inline keys (JWKS JSON or one PEM SPKI public key). */
export function configuredKey(
  jwksUrl: string | null,
  publicKeys: string | null,
): KeyObject | JWTVerifyGetKey {
  if (jwksUrl !== null) return createRemoteJWKSet(new URL(jwksUrl), { timeoutDuration: 5_000 });
  if (publicKeys === null) throw new Error("no verification keys configured");
  if (publicKeys.startsWith("-----BEGIN")) return createPublicKey(publicKeys.replaceAll("\\n", "\n"));
  return createLocalJWKSet(JSON.parse(publicKeys) as JSONWebKeySet);
}

function principalOf(payload: JWTPayload, log: Logger): Principal {
  const sub = payload.sub ?? "";
  // The subject becomes a user id (and a shard key): it must be one.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused.
  const control = /[\u0000-\u001f\u007f]/;
  if (sub.length > USER_ID_RULE.max || !USER_ID_RULE.pattern?.test(sub) || control.test(sub)) {
    log.debug("token subject is not a valid user id");
    throw unauthenticated("invalid token");
  }
  const raw = payload.scope;
  const scopes = new Set(
    typeof raw === "string"
      ? raw.split(" ")
      : Array.isArray(raw)
        ? raw.filter((s) => typeof s === "string")
        : [],
  );
  return { subject: sub, operator: scopes.has(OPERATOR_SCOPE), service: scopes.has(SERVICE_SCOPE) };
}

/** Maps a jose failure to what the caller may learn: expired, or just invalid. Never the token. */
function rejection(e: unknown, log: Logger): Error {
  if (e instanceof errors.JWTExpired) return unauthenticated("token expired");
  if (e instanceof errors.JWKSTimeout || !(e instanceof errors.JOSEError)) {
    // The key set could not be fetched: not the caller's fault, and worth an operator's attention.
    log.warn({ err: e }, "token keys unavailable");
    return new ConnectError("authentication unavailable", Code.Unavailable);
  }
  log.debug({ joseCode: e.code }, "token rejected");
  return unauthenticated("invalid token");
}

/** UNAUTHENTICATED with a fixed message. */
export function unauthenticated(message: string): DomainError {
  return new DomainError("unauthenticated", message);
}
