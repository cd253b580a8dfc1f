/**
 * Auth from the settings: a verifier over the configured keys (AUTH_JWKS_URL or AUTH_PUBLIC_KEYS
 * with AUTH_ISSUER, AUTH_AUDIENCE, AUTH_ALGORITHMS), or dev mode (AUTH_DEV=true): an in-memory key
 * pair whose two printed tokens are the only ones accepted.
 */
import type { Logger } from "pino";
import { type Config, requireAuthConfigured } from "../config.js";
import { createDevAuth, DEV_ALGORITHM, DEV_AUDIENCE, DEV_ISSUER, type DevTokens } from "./dev.js";
import { configuredKey, createVerifier, type TokenVerifier } from "./verifier.js";

export type AuthSettings = Pick<
  Config,
  "authJwksUrl" | "authPublicKeys" | "authIssuer" | "authAudience" | "authAlgorithms" | "authDev"
>;

export interface AuthSetup {
  verifier: TokenVerifier;
  /** Dev mode only: tokens to call with (print them); null otherwise. */
  devTokens: DevTokens | null;
}

/** Throws ConfigError when neither keys nor dev mode are configured: nothing serves unauthenticated. */
export async function setupAuth(c: AuthSettings, log: Logger): Promise<AuthSetup> {
  requireAuthConfigured(c);
  if (c.authDev) {
    const dev = await createDevAuth(c.authIssuer ?? DEV_ISSUER, c.authAudience ?? DEV_AUDIENCE);
    log.warn(
      { issuer: dev.issuer, audience: dev.audience },
      "dev auth (AUTH_DEV=true): tokens are signed by a key made at start; never use in production",
    );
    const verifier = createVerifier({
      key: dev.publicKey,
      issuer: dev.issuer,
      audience: dev.audience,
      algorithms: [DEV_ALGORITHM],
    });
    return { verifier, devTokens: dev.tokens };
  }
  // loadConfig made sure issuer and audience are set whenever keys are.
  const verifier = createVerifier({
    key: configuredKey(c.authJwksUrl, c.authPublicKeys),
    issuer: c.authIssuer ?? "",
    audience: c.authAudience ?? "",
    algorithms: c.authAlgorithms,
  });
  return { verifier, devTokens: null };
}
