import { randomUUID } from "node:crypto";
import { createServer } from "node:net";
import { pino } from "pino";
import { afterAll, describe, expect, inject, it } from "vitest";
import { createStockLocks } from "../../src/lock/locks.js";
import { createMetrics } from "../../src/observability/metrics.js";
import { sample } from "./helpers.js";

// Lock failures feed lock_failures_total{reason} and lock_wait_seconds{outcome}.

const logger = pino({ level: "silent" });
const opened: { close(): Promise<void> }[] = [];
afterAll(async () => {
  await Promise.all(opened.map((l) => l.close()));
});

function observedLocks(redisUrls: string[]) {
  const metrics = createMetrics();
  const locks = createStockLocks({
    redisUrls,
    logger,
    options: { ttlMs: 2000, retryCount: 2, retryDelayMs: 20, retryJitterMs: 5 },
    observer: { acquireEnded: metrics.lockAcquireEnded, heldLockFailed: metrics.heldLockFailed },
  });
  opened.push(locks);
  return { locks, text: async () => (await metrics.render()).body };
}

describe("lock metrics", () => {
  it("counts contention: keys held by someone else past the retry budget", async () => {
    const { locks, text } = observedLocks(inject("redisUrls"));
    const key = randomUUID();
    await locks.withLocks([key], async () => {
      await expect(locks.withLocks([key], async () => "never")).rejects.toMatchObject({
        reason: "lock_contention",
      });
    });
    const body = await text();
    expect(sample(body, "lock_wait_seconds_count", { outcome: "acquired" })).toBe(1);
    expect(sample(body, "lock_wait_seconds_count", { outcome: "contention" })).toBe(1);
    expect(sample(body, "lock_failures_total", { reason: "contention" })).toBe(1);
  });

  it("counts an unreachable quorum as unavailable", async () => {
    const port = await closedPort();
    const { locks, text } = observedLocks([`redis://127.0.0.1:${port}`]);
    await expect(locks.withLocks([randomUUID()], async () => "never")).rejects.toMatchObject({
      reason: "lock_unavailable",
    });
    const body = await text();
    expect(sample(body, "lock_failures_total", { reason: "unavailable" })).toBe(1);
    expect(sample(body, "lock_wait_seconds_count", { outcome: "unavailable" })).toBe(1);
  });
});

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
