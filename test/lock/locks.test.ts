import { randomUUID } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { DomainError } from "../../src/errors.js";
import { createStockLocks, type LockOptions, type StockLocks } from "../../src/lock/locks.js";
import { type RedisNodes, startRedisNodes } from "../harness/redis-nodes.js";

interface LogLine {
  level: number;
  msg: string;
}

/** A logger whose lines the test can read (pino level 40 = warn). */
function capturingLogger() {
  const lines: LogLine[] = [];
  const logger = pino({ level: "debug" }, { write: (line: string) => lines.push(JSON.parse(line)) });
  return { logger, warnings: () => lines.filter((l) => l.level === 40).map((l) => l.msg) };
}

async function reasonOf(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DomainError);
  return (error as DomainError).reason;
}

/** Starts a holder on keys; resolves once it is inside the lock; `letGo` ends its work. */
async function hold(locks: StockLocks, keys: string[]) {
  let letGo = () => {};
  const holding = new Promise<void>((resolve) => {
    letGo = resolve;
  });
  let entered = () => {};
  const inside = new Promise<void>((resolve) => {
    entered = resolve;
  });
  const done = locks.withLocks(keys, async () => {
    entered();
    await holding;
    return "held";
  });
  await Promise.race([inside, done]);
  return { letGo, done };
}

describe.each([1, 3])("stock locks on %i Redis node(s)", (n) => {
  let nodes: RedisNodes;
  let admins: Redis[];
  const opened: StockLocks[] = [];

  beforeAll(async () => {
    nodes = await startRedisNodes(n);
    admins = nodes.urls.map((url) => {
      const admin = new Redis(url, { maxRetriesPerRequest: 1 });
      admin.on("error", () => {}); // nodes go down on purpose
      return admin;
    });
  });
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((l) => l.close()));
    for (let i = 0; i < n; i++) await nodes.start(i).catch(() => {}); // a fault test may have left one down
  });
  afterAll(async () => {
    for (const admin of admins ?? []) admin.disconnect();
    await nodes?.stopAll();
  });

  const locks = (options: Partial<LockOptions> = {}, logger = pino({ level: "silent" })) => {
    const l = createStockLocks({ redisUrls: nodes.urls, options, logger });
    opened.push(l);
    return l;
  };
  /** How many nodes hold each key right now. */
  const holders = async (keys: string[]) =>
    Promise.all(
      keys.map(async (k) => {
        const found = await Promise.all(admins.map((a) => a.exists(`lock:stock:${k}`)));
        return found.reduce((sum, x) => sum + x, 0);
      }),
    );
  const ids = (...names: string[]) => {
    const run = randomUUID();
    return names.map((name) => `${run}:${name}`);
  };

  it("holds all keys, deduplicated, on every node while fn runs and frees them afterwards", async () => {
    const [a, b] = ids("a", "b") as [string, string];
    const { logger, warnings } = capturingLogger();
    const l = locks({}, logger);
    const result = await l.withLocks([b, a, b], async (signal) => {
      expect(await holders([a, b])).toEqual([n, n]);
      expect(signal.aborted).toBe(false);
      return 42;
    });
    expect(result).toBe(42);
    expect(await holders([a, b])).toEqual([0, 0]);
    expect(warnings()).toEqual([]);
  });

  it("never runs overlapping key sets at once, but runs a disjoint one concurrently", async () => {
    const [x, y, z] = ids("x", "y", "z") as [string, string, string];
    const l = locks({ retryCount: 50 });
    const spans: Record<string, [number, number]> = {};
    // A rendezvous that only completes if the disjoint holder and the first overlapping holder run
    // at the same time (each waits, inside its lock, for the other to start): load-independent.
    let overlapStarted: () => void = () => {};
    const anOverlapStarted = new Promise<string>((resolve) => {
      overlapStarted = () => resolve("met");
    });
    let disjointStarted: () => void = () => {};
    const theDisjointStarted = new Promise<string>((resolve) => {
      disjointStarted = () => resolve("met");
    });
    const timeout = () => delay(5000).then(() => "timeout");
    const met: Record<string, string> = {};
    const work = (name: string) => async () => {
      const start = performance.now();
      overlapStarted();
      met[name] = await Promise.race([theDisjointStarted, timeout()]);
      await delay(100);
      spans[name] = [start, performance.now()];
      return name;
    };
    const disjoint = async () => {
      disjointStarted();
      return Promise.race([anOverlapStarted, timeout()]);
    };
    const results = await Promise.all([
      l.withLocks([x, y], work("first")),
      l.withLocks([y, x], work("second")),
      l.withLocks([z], disjoint),
    ]);
    expect(results).toEqual(["first", "second", "met"]);
    const { first, second } = spans as Record<string, [number, number]>;
    const overlap = (p: [number, number], q: [number, number]) => p[0] < q[1] && q[0] < p[1];
    expect(overlap(first as [number, number], second as [number, number])).toBe(false);
    const earlier = (first as [number, number])[0] < (second as [number, number])[0] ? "first" : "second";
    expect(met[earlier]).toBe("met");
  });

  it("fails a contender with lock_contention when the holder keeps the lock past the retry budget", async () => {
    const [k] = ids("k") as [string];
    const l = locks({ retryCount: 3, retryDelayMs: 20, retryJitterMs: 10 });
    const holder = await hold(l, [k]);
    let contenderRan = false;
    const started = performance.now();
    const contended = l.withLocks([k, `${k}:other`], async () => {
      contenderRan = true;
    });
    expect(await reasonOf(contended)).toBe("lock_contention");
    expect(performance.now() - started).toBeLessThan(2000);
    expect(contenderRan).toBe(false);
    holder.letGo();
    expect(await holder.done).toBe("held");
    expect(await l.withLocks([k], async () => "free again")).toBe("free again");
  });

  it("extends the lock automatically while fn outlives the TTL", async () => {
    const [k] = ids("k") as [string];
    const l = locks({ ttlMs: 500 });
    const contender = locks({ ttlMs: 500, retryCount: 2, retryDelayMs: 20, retryJitterMs: 10 });
    const probes: string[] = [];
    const holder = l.withLocks([k], async (signal) => {
      for (let t = 0; t < 5; t++) {
        await delay(300); // probes at ~300..1500 ms, well past the first TTL
        probes.push(await reasonOf(contender.withLocks([k], async () => "stole it")));
      }
      return signal.aborted;
    });
    expect(await holder).toBe(false);
    expect(probes).toEqual(Array(5).fill("lock_contention"));
    expect(await holders([k])).toEqual([0]);
  });

  it("propagates fn's own error unchanged and still releases", async () => {
    const [k] = ids("k") as [string];
    const l = locks();
    const boom = new Error("boom");
    await expect(
      l.withLocks([k], async () => {
        throw boom;
      }),
    ).rejects.toBe(boom);
    expect(await holders([k])).toEqual([0]);
  });

  it("stops waiting with deadline_exceeded when the caller's signal aborts", async () => {
    const [k] = ids("k") as [string];
    const l = locks({ retryCount: 1000 });
    expect(await reasonOf(l.withLocks([k], async () => 1, AbortSignal.abort()))).toBe("deadline_exceeded");
    const holder = await hold(l, [k]);
    const started = performance.now();
    const waiting = l.withLocks([k], async () => 2, AbortSignal.timeout(150));
    expect(await reasonOf(waiting)).toBe("deadline_exceeded");
    expect(performance.now() - started).toBeLessThan(1000);
    holder.letGo();
    expect(await holder.done).toBe("held");
  });

  it("aborts fn's signal when the lock is lost, and does not fail the call for the failed release", async () => {
    const [k] = ids("k") as [string];
    const { logger, warnings } = capturingLogger();
    const l = locks({ ttlMs: 500 }, logger);
    const result = await l.withLocks([k], async (signal) => {
      await Promise.all(admins.map((a) => a.del(`lock:stock:${k}`))); // someone else's expiry, simulated
      const aborted = new Promise<unknown>((resolve) => {
        signal.addEventListener("abort", () => resolve(signal.reason));
      });
      return Promise.race([aborted, delay(3000, "never aborted")]);
    });
    expect(result).toBeInstanceOf(DomainError);
    expect((result as DomainError).reason).toBe("lock_unavailable");
    expect(warnings()).toEqual(["stock lock lost", "stock lock release failed"]);
  });

  it("returns fn's result when every node dies before the release", async () => {
    const [k] = ids("k") as [string];
    const { logger, warnings } = capturingLogger();
    const l = locks({}, logger);
    const result = await l.withLocks([k], async () => {
      for (let i = 0; i < n; i++) await nodes.stop(i);
      return "committed";
    });
    expect(result).toBe("committed");
    expect(warnings()).toContain("stock lock release failed");
  });

  it("fails fast with lock_unavailable when a quorum is down, and recovers when the nodes return", async () => {
    const [k] = ids("k") as [string];
    const l = locks();
    await l.withLocks([k], async () => {}); // connected
    if (n === 3) {
      await nodes.stop(0);
      expect(await l.withLocks([k], async () => "minority down")).toBe("minority down");
      expect(await l.quorumReachable()).toBe(true);
    }
    const quorum = Math.floor(n / 2) + 1;
    for (let i = 0; i < quorum; i++) await nodes.stop(i).catch(() => {});
    const started = performance.now();
    expect(await reasonOf(l.withLocks([k], async () => "ran"))).toBe("lock_unavailable");
    expect(performance.now() - started).toBeLessThan(3000);
    expect(await l.quorumReachable()).toBe(false);

    for (let i = 0; i < quorum; i++) await nodes.start(i);
    const deadline = Date.now() + 10_000;
    let outcome: unknown;
    while (Date.now() < deadline) {
      outcome = await l.withLocks([k], async () => "back").catch((e: unknown) => e);
      if (outcome === "back") break;
      await delay(100);
    }
    expect(outcome).toBe("back");
    expect(await l.quorumReachable()).toBe(true);
  });
});
