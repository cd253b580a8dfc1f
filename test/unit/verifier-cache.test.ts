import { setTimeout as delay } from "node:timers/promises";
import { createLocalJWKSet, type JSONWebKeySet, type JWTVerifyGetKey } from "jose";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { createVerifier } from "../../src/auth/verifier.js";
import { TEST_AUDIENCE, TEST_ISSUER, testAuthConfig, token } from "../harness/auth.js";

const log = pino({ enabled: false });

/** The test key set, counting how often jose asks it for a key (once per real signature check). */
function countingKeys(): { key: JWTVerifyGetKey; lookups: () => number } {
  const keys = createLocalJWKSet(JSON.parse(testAuthConfig.authPublicKeys ?? "") as JSONWebKeySet);
  let n = 0;
  return {
    key: (header, input) => {
      n++;
      return keys(header, input);
    },
    lookups: () => n,
  };
}

const verifier = (key: JWTVerifyGetKey, cacheMs?: number) =>
  createVerifier({
    key,
    issuer: TEST_ISSUER,
    audience: TEST_AUDIENCE,
    algorithms: ["ES256"],
    clockToleranceS: 0,
    ...(cacheMs !== undefined && { cacheMs }),
  });

describe("verified tokens are remembered", () => {
  it("checks a token's signature once, then answers from the cache with the same principal", async () => {
    const keys = countingKeys();
    const v = verifier(keys.key);
    const t = token({ sub: "buyer-1", scopes: ["service"] });
    const first = await v.verify(t, log);
    const again = await v.verify(t, log);
    expect(again).toEqual(first);
    expect(first).toEqual({ subject: "buyer-1", operator: false, service: true });
    expect(keys.lookups()).toBe(1);
    await v.verify(token({ sub: "buyer-2" }), log);
    expect(keys.lookups()).toBe(2);
  });

  it("never answers from the cache past the token's exp", async () => {
    const keys = countingKeys();
    const v = verifier(keys.key);
    const t = token({ sub: "buyer-1", expiresInS: 1 });
    await v.verify(t, log);
    await delay(1100);
    await expect(v.verify(t, log)).rejects.toThrow("token expired");
  });

  it("never caches a rejected token, and cacheMs 0 verifies every call", async () => {
    const keys = countingKeys();
    const v = verifier(keys.key, 0);
    const bad = `${token({ sub: "buyer-1" }).slice(0, -4)}AAAA`;
    await expect(v.verify(bad, log)).rejects.toThrow("invalid token");
    await expect(v.verify(bad, log)).rejects.toThrow("invalid token");
    const t = token({ sub: "buyer-1" });
    await v.verify(t, log);
    await v.verify(t, log);
    expect(keys.lookups()).toBe(4);
  });
});
