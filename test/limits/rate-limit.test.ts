/**
 * Issue 6 "Limits": a per-principal rate limit shared across instances (counted in Redis) answers
 * RESOURCE_EXHAUSTED, before the request body is read, and only for the principal over its allowance.
 */
import { setTimeout as delay } from "node:timers/promises";
import { Code, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { ReservationService } from "../../gen/shop/reservation/v1/reservation_pb.js";
import type { App } from "../../src/app.js";
import { startTestApp, unique } from "../harness/app.js";
import { bearer, token } from "../harness/auth.js";
import { transports } from "../harness/clients.js";
import { expectError } from "../harness/errors.js";

const PER_SECOND = 5;
let a: App & { port: number };
let b: App & { port: number };
beforeAll(async () => {
  [a, b] = await Promise.all([
    startTestApp({ rateLimitUserRps: PER_SECOND, rateLimitServiceRps: 0 }),
    startTestApp({ rateLimitUserRps: PER_SECOND, rateLimitServiceRps: 0 }),
  ]);
});
afterAll(async () => {
  await Promise.all([a?.shutdown(), b?.shutdown()]);
});

/** A ReservationService client of `app` calling as `sub` (with `scopes`). */
function reservationsAs(app: App & { port: number }, sub: string, scopes: string[] = []) {
  const signed = token({ sub, scopes });
  const t = transports(app.port, [bearer(() => signed)])["grpc-h2c"];
  if (!t) throw new Error("transport");
  return createClient(ReservationService, t);
}

describe("the per-principal rate limit", () => {
  it("is shared by every instance: the allowance used on A is gone on B, and comes back", async () => {
    // Windows start at a principal's first call, so calls made within well under a second of it
    // share one window. If this machine is too slow for that, try again with a fresh user.
    for (let attempt = 0; attempt < 3; attempt++) {
      const user = unique("limited");
      const onA = reservationsAs(a, user);
      const onB = reservationsAs(b, user);
      const started = Date.now();
      for (let i = 0; i < PER_SECOND; i++) await onA.listReservations({ userId: user });
      const err = await expectError(onB.listReservations({ userId: user }), Code.ResourceExhausted);
      if (Date.now() - started > 800) continue; // the window may have turned over: not a clean run
      expect(err.rawMessage).toMatch(/^too many calls: retry in \d+ ms$/);
      // Someone else is not affected, on either instance.
      const other = unique("other");
      await reservationsAs(b, other).listReservations({ userId: other });
      // After the window, the allowance is back.
      const wait = Number(/retry in (\d+) ms/.exec(err.rawMessage)?.[1]);
      expect(wait).toBeGreaterThan(0);
      expect(wait).toBeLessThanOrEqual(1000);
      await delay(wait + 50);
      await onB.listReservations({ userId: user });
      return;
    }
    expect.fail("three attempts could not make 6 calls within 800 ms");
  });

  it("counts plain users only when the service allowance is off", async () => {
    const service = reservationsAs(a, unique("checkout"), ["service"]);
    const user = unique("buyer");
    const results = await Promise.allSettled(
      Array.from({ length: 4 * PER_SECOND }, () => service.listReservations({ userId: user })),
    );
    expect(results.filter((r) => r.status === "rejected")).toEqual([]);
  });

  it("refuses at most the calls over the allowance when many arrive at once", async () => {
    const user = unique("burst");
    const clients = [reservationsAs(a, user), reservationsAs(b, user)];
    const results = await Promise.allSettled(
      Array.from({ length: 30 }, (_, i) => clients[i % 2]?.listReservations({ userId: user })),
    );
    const ok = results.filter((r) => r.status === "fulfilled").length;
    // One window, or two if the burst straddles a turnover: never the 30 a per-instance count allows.
    expect(ok).toBeGreaterThanOrEqual(PER_SECOND);
    expect(ok).toBeLessThanOrEqual(2 * PER_SECOND);
    for (const r of results)
      if (r.status === "rejected") expect(Code[(r.reason as { code: Code }).code]).toBe("ResourceExhausted");
  });

  it("still limits, per instance, when its Redis node cannot be reached", async () => {
    // The first Redis URL holds the counters: point it at a closed port (the lock quorum keeps 3 of 4).
    const down = await startTestApp({
      redisUrls: ["redis://127.0.0.1:1", ...inject("redisUrls")],
      rateLimitUserRps: PER_SECOND,
    });
    try {
      const user = unique("fallback");
      const res = reservationsAs(down, user);
      const results = await Promise.allSettled(
        Array.from({ length: 3 * PER_SECOND }, () => res.listReservations({ userId: user })),
      );
      const ok = results.filter((r) => r.status === "fulfilled").length;
      expect(ok).toBeGreaterThanOrEqual(PER_SECOND);
      expect(ok).toBeLessThanOrEqual(2 * PER_SECOND);
    } finally {
      await down.shutdown();
    }
  });
});
