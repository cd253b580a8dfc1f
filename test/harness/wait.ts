import { setTimeout as delay } from "node:timers/promises";
import { expect } from "vitest";

/**
 * Polls `check` until it holds, failing with `what` after `ms`. A hang guard for something that
 * happens asynchronously (a stream event, a sweep), never a latency assertion.
 */
export async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  ms = 10_000,
  intervalMs = 20,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) expect.fail(`not within ${ms} ms: ${what}`);
    await delay(intervalMs);
  }
}
