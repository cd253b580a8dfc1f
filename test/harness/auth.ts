/**
 * Tokens for tests. One ES256 key pair per test process (each test file runs in its own fork): apps
 * started by startTestApp verify with its public key (testAuthConfig); spawned processes get the same
 * settings as environment variables (testAuthEnv). `token()` signs whatever a test needs: a user,
 * scopes, an expiry, another audience or issuer, another key.
 */
import { generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import type { Interceptor } from "@connectrpc/connect";
import type { AppConfig } from "../../src/app.js";

export const TEST_ISSUER = "shop-mesh-test";
export const TEST_AUDIENCE = "shop-mesh";
/** The subject of the default token: an operator that is also a service ("operator" in histories). */
export const DEFAULT_SUBJECT = "operator";

const keys = generateKeyPairSync("ec", { namedCurve: "P-256" });
const publicJwk = { ...keys.publicKey.export({ format: "jwk" }), kid: "test", alg: "ES256", use: "sig" };

/** The auth settings of every test app (spread into startTestApp's config). */
export const testAuthConfig: Pick<
  AppConfig,
  "authJwksUrl" | "authPublicKeys" | "authIssuer" | "authAudience" | "authAlgorithms" | "authDev"
> = {
  authJwksUrl: null,
  authPublicKeys: JSON.stringify({ keys: [publicJwk] }),
  authIssuer: TEST_ISSUER,
  authAudience: TEST_AUDIENCE,
  authAlgorithms: ["ES256", "RS256", "EdDSA"],
  authDev: false,
};

/** The same settings as environment variables, for spawned `src/main.ts` processes. */
export const testAuthEnv: Record<string, string> = {
  AUTH_PUBLIC_KEYS: testAuthConfig.authPublicKeys ?? "",
  AUTH_ISSUER: TEST_ISSUER,
  AUTH_AUDIENCE: TEST_AUDIENCE,
  AUTH_ALGORITHMS: testAuthConfig.authAlgorithms.join(","),
};

export interface TokenOptions {
  /** `sub`; default DEFAULT_SUBJECT. */
  sub?: string;
  /** Scopes (space-joined into `scope`); default none. */
  scopes?: string[];
  /** Seconds from now to `exp` (negative: already expired); default 3600. */
  expiresInS?: number;
  audience?: string;
  issuer?: string;
  /** Another signing key (a bad signature); default the test key. */
  key?: KeyObject;
  /** Header alg; default ES256 (must match the key). */
  alg?: string;
  kid?: string;
}

/** base64url of a string or bytes. */
export const b64url = (data: string | Buffer): string => Buffer.from(data).toString("base64url");

/**
 * A JWT signed with node:crypto (synchronous, so grpc-js interceptors can use it): ES256 with the
 * test key unless told otherwise. jose on the server side is what checks it.
 */
export function token(opts: TokenOptions = {}): string {
  const now = Math.floor(Date.now() / 1000);
  const scope = (opts.scopes ?? []).join(" ");
  const header = { alg: opts.alg ?? "ES256", typ: "JWT", kid: opts.kid ?? "test" };
  const payload = {
    sub: opts.sub ?? DEFAULT_SUBJECT,
    iss: opts.issuer ?? TEST_ISSUER,
    aud: opts.audience ?? TEST_AUDIENCE,
    iat: now,
    exp: now + (opts.expiresInS ?? 3600),
    ...(scope !== "" && { scope }),
  };
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
  const signature = sign("sha256", Buffer.from(input), {
    key: opts.key ?? keys.privateKey,
    dsaEncoding: "ieee-p1363",
  });
  return `${input}.${b64url(signature)}`;
}

/** A token of a plain user (no scope): a buyer, and the seller of its own products. */
export const userToken = (sub: string): string => token({ sub });

/** The test public key as PEM (SPKI), e.g. for an HS256 token that uses it as its secret. */
export const testPublicPem = keys.publicKey.export({ format: "pem", type: "spki" }).toString();

let defaultToken: string | undefined;
/** The token harness clients send unless a call sets its own: operator + service, valid for 6 hours. */
export function defaultTestToken(): string {
  defaultToken ??= token({ scopes: ["operator", "service"], expiresInS: 6 * 3600 });
  return defaultToken;
}

/** Adds `Authorization: Bearer <token>` to calls that carry none. */
export function bearer(get: () => string = defaultTestToken): Interceptor {
  return (next) => async (req) => {
    if (!req.header.has("authorization")) req.header.set("authorization", `Bearer ${get()}`);
    return next(req);
  };
}
