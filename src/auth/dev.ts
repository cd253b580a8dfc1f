/**
 * Dev mode (AUTH_DEV=true): an ES256 key pair made in memory at start, so `npm start` works without
 * an identity provider, and two printed tokens to call with. Restarting invalidates every token.
 * Never on unless asked, and never for production.
 */
import { type CryptoKey, generateKeyPair, SignJWT } from "jose";
import { OPERATOR_SCOPE, SERVICE_SCOPE } from "./principal.js";

export const DEV_ISSUER = "shop-mesh-dev";
export const DEV_AUDIENCE = "shop-mesh";
export const DEV_ALGORITHM = "ES256";

/** Tokens printed at start in dev mode (1 hour each). */
export interface DevTokens {
  /** sub `dev-operator`, scopes operator and service. */
  operator: string;
  /** sub `dev-buyer`, no scope: a plain buyer and seller. */
  buyer: string;
}

export interface DevAuth {
  publicKey: CryptoKey;
  issuer: string;
  audience: string;
  tokens: DevTokens;
}

/** Makes the key pair and signs the two dev tokens. */
export async function createDevAuth(issuer = DEV_ISSUER, audience = DEV_AUDIENCE): Promise<DevAuth> {
  const { publicKey, privateKey } = await generateKeyPair(DEV_ALGORITHM);
  const sign = (sub: string, scope: string) =>
    new SignJWT({ ...(scope && { scope }) })
      .setProtectedHeader({ alg: DEV_ALGORITHM, typ: "JWT" })
      .setSubject(sub)
      .setIssuer(issuer)
      .setAudience(audience)
      .setIssuedAt()
      .setExpirationTime("1h")
      .sign(privateKey);
  return {
    publicKey,
    issuer,
    audience,
    tokens: {
      operator: await sign("dev-operator", `${OPERATOR_SCOPE} ${SERVICE_SCOPE}`),
      buyer: await sign("dev-buyer", ""),
    },
  };
}
