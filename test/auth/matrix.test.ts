/**
 * Issue 6: every RPC of the three services refuses a missing or bad token with UNAUTHENTICATED, over
 * Connect and gRPC: no token, expired, wrong audience, wrong issuer, `alg=none`, HS256 keyed with the
 * public key, a bad signature, a malformed header. The answer never echoes the token.
 */
import { createHmac, generateKeyPairSync } from "node:crypto";
import { Code, type Transport } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import { OrderService } from "../../gen/shop/order/v1/order_pb.js";
import { ReservationService } from "../../gen/shop/reservation/v1/reservation_pb.js";
import type { App } from "../../src/app.js";
import { startTestApp } from "../harness/app.js";
import { b64url, TEST_AUDIENCE, TEST_ISSUER, testPublicPem, token } from "../harness/auth.js";
import { MAIN_TRANSPORTS, transports } from "../harness/clients.js";
import { rejection } from "../harness/errors.js";
import { invoke } from "./invoke.js";

let app: App & { port: number };
beforeAll(async () => {
  app = await startTestApp();
});
afterAll(async () => {
  await app?.shutdown();
});

const services = [InventoryService, ReservationService, OrderService];
const methods = services.flatMap((s) => s.methods);

function unsigned(header: object, payload: object): string {
  return `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
}
const now = () => Math.floor(Date.now() / 1000);
const claims = () => ({
  sub: "mallory",
  iss: TEST_ISSUER,
  aud: TEST_AUDIENCE,
  iat: now(),
  exp: now() + 600,
  scope: "operator service",
});

const otherKey = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
const hs256 = () => {
  const input = unsigned({ alg: "HS256", typ: "JWT", kid: "test" }, claims());
  return `${input}.${b64url(createHmac("sha256", testPublicPem).update(input).digest())}`;
};
const badTokens: [string, () => string | null][] = [
  ["no token", () => null],
  ["an expired token", () => token({ scopes: ["operator"], expiresInS: -120 })],
  ["a wrong audience", () => token({ scopes: ["operator"], audience: "another-mesh" })],
  ["a wrong issuer", () => token({ scopes: ["operator"], issuer: "https://evil.example" })],
  ["alg=none", () => `${unsigned({ alg: "none", typ: "JWT" }, claims())}.`],
  ["HS256 keyed with the public key", hs256],
  ["a bad signature", () => token({ scopes: ["operator"], key: otherKey })],
  [
    "a tampered payload",
    () => {
      const [h, , s] = token({ sub: "mallory" }).split(".");
      return `${h}.${b64url(JSON.stringify(claims()))}.${s}`;
    },
  ],
  ["a malformed header", () => "not-a-jwt"],
];

describe.each(MAIN_TRANSPORTS)("every RPC over %s", (transportName) => {
  const transport = () => transports(app.port, [])[transportName] as Transport;

  it.each(badTokens)("refuses %s with UNAUTHENTICATED", async (_name, make) => {
    const t = make();
    const headers: Record<string, string> = t === null ? {} : { authorization: `Bearer ${t}` };
    const tr = transport();
    for (const method of methods) {
      const err = await rejection(invoke(tr, method, headers));
      expect(Code[err.code], `${method.parent.typeName}/${method.name}: ${err.rawMessage}`).toBe(
        Code[Code.Unauthenticated],
      );
      expect(err.rawMessage).toMatch(
        /^(missing bearer token|token expired|invalid token|invalid authorization header)$/,
      );
      if (t !== null) expect(err.rawMessage).not.toContain(t.slice(0, 20));
    }
  });
});

describe("the messages say only what the caller may know", () => {
  it("an expired token says so; every other failure is just an invalid token", async () => {
    const tr = transports(app.port, [])["connect-json-http1"] as Transport;
    const method = InventoryService.method.getProduct;
    const expired = await rejection(
      invoke(tr, method, { authorization: `Bearer ${token({ expiresInS: -120 })}` }),
    );
    expect(expired.rawMessage).toBe("token expired");
    const wrong = await rejection(
      invoke(tr, method, { authorization: `Bearer ${token({ audience: "x" })}` }),
    );
    expect(wrong.rawMessage).toBe("invalid token");
    const basic = await rejection(invoke(tr, method, { authorization: "Basic dXNlcjpwYXNz" }));
    expect(basic.rawMessage).toBe("invalid authorization header");
  });

  it("a token within its 30 s clock tolerance still works; a subject that is no user id does not", async () => {
    const tr = transports(app.port, [])["grpc-h2c"] as Transport;
    const method = InventoryService.method.listProducts;
    await invoke(tr, method, { authorization: `Bearer ${token({ expiresInS: -5 })}` });
    const blank = await rejection(
      invoke(tr, method, { authorization: `Bearer ${token({ sub: " padded " })}` }),
    );
    expect(blank.code).toBe(Code.Unauthenticated);
  });
});
