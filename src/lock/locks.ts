import { setTimeout as delay } from "node:timers/promises";
import { ExecutionError, type Lock, Redlock, ResourceLockedError } from "@sesamecare-oss/redlock";
import { Redis } from "ioredis";
import type { Logger } from "pino";
import { DomainError } from "../errors.js";

/*
 * Redlock orders cross-shard stock work; Postgres stays the guard. A holder paused past its TTL (GC, a
 * stalled event loop, a slow network) keeps running after another process took the lock, and Redlock has
 * no fencing token a database could check. So every stock write must still be a conditional UPDATE that
 * cannot oversell on its own: the lock only keeps a multi-shard operation from half-succeeding against a
 * concurrent one on the same products.
 */

/** Timing of the stock locks; every field in milliseconds except `retryCount`. */
export interface LockOptions {
  ttlMs: number;
  retryCount: number;
  retryDelayMs: number;
  retryJitterMs: number;
  /** Extend the lock when it has less than this left. */
  automaticExtensionThresholdMs: number;
}

/** Cross-shard stock locks over a Redis quorum (Redlock). */
export interface StockLocks {
  /** Holds one Redlock over all keys (sorted, deduplicated, prefixed "lock:stock:") while fn runs; extends it automatically for long work; fn gets a signal aborted if the lock is lost. */
  withLocks<T>(
    keys: readonly string[],
    fn: (signal: AbortSignal) => Promise<T>,
    callerSignal?: AbortSignal,
  ): Promise<T>;
  /** Pings every node; true when a quorum answers (for health). */
  quorumReachable(): Promise<boolean>;
  /** Quits every client; locks still held expire on their own. */
  close(): Promise<void>;
}

/** Optional hooks for metrics; they must be cheap and must not throw. */
export interface LockObserver {
  /** An acquisition ended after `seconds`: acquired, or failed and why. */
  acquireEnded(
    seconds: number,
    outcome: "acquired" | "contention" | "unavailable" | "deadline_exceeded" | "error",
  ): void;
  /** A held lock could not be kept until the work ended, or could not be released after it. */
  heldLockFailed(reason: "lost" | "release_failed"): void;
}

const PREFIX = "lock:stock:";
/** Bounds every Redis command, so a hung node cannot stall an acquisition or a health check. */
const COMMAND_TIMEOUT_MS = 500;
/** How long a node may take to connect before it counts as down. */
const CONNECT_TIMEOUT_MS = 1000;

/** Connects one fail-fast client per Redis node; nodes that go away rejoin when they come back. */
export function createStockLocks(deps: {
  redisUrls: string[];
  options?: Partial<LockOptions>;
  logger: Logger;
  observer?: LockObserver;
}): StockLocks {
  const opts = resolveOptions(deps.options);
  const observer = deps.observer;
  const log = deps.logger.child({ component: "stock-locks" });
  if (deps.redisUrls.length === 0) throw new Error("stock locks need at least one Redis URL");
  const clients = deps.redisUrls.map((url, node) => connect(url, node, log));
  // Fresh clients reject commands until connected (no offline queue): the first acquisitions wait for
  // every node's first connection (at most the connect timeout: a node down at start costs that once),
  // so a just-started process does not mistake "still connecting" for "down". Then this costs nothing.
  const needed = clients.length;
  let firstConnect: Promise<void> | null = Promise.race([
    new Promise<void>((resolve) => {
      let ready = clients.filter((c) => c.status === "ready").length;
      if (ready >= needed) return resolve();
      for (const c of clients)
        c.once("ready", () => {
          if (++ready >= needed) resolve();
        });
    }),
    delay(CONNECT_TIMEOUT_MS, undefined, { ref: false }),
  ]).then(() => {
    firstConnect = null;
  });
  // Redlock makes single attempts: its own retry loop cannot be aborted and hides why it failed.
  const redlock = new Redlock(clients, {
    retryCount: 0,
    retryDelay: opts.retryDelayMs,
    retryJitter: opts.retryJitterMs,
  });

  async function acquire(resources: string[], signal: AbortSignal | undefined): Promise<Lock> {
    let cause: ExecutionError | undefined;
    let unreachableInARow = 0;
    if (firstConnect) await firstConnect;
    for (let attempt = 0; attempt <= opts.retryCount; attempt++) {
      // Contention is worth waiting out; a quorum that is down is not: fail fast after a few tries.
      if (unreachableInARow >= 3) break;
      if (attempt > 0) {
        const jitter = Math.floor((Math.random() * 2 - 1) * opts.retryJitterMs);
        await delay(Math.max(0, opts.retryDelayMs + jitter), undefined, { signal }).catch(() => {});
      }
      if (signal?.aborted) throw deadlineExceeded();
      try {
        return await redlock.acquire(resources, opts.ttlMs);
      } catch (e) {
        if (!(e instanceof ExecutionError)) throw e;
        cause = e;
        unreachableInARow = (await quorumUnreachable(e)) ? unreachableInARow + 1 : 0;
      }
    }
    if (cause && (await quorumUnreachable(cause))) {
      throw new DomainError("lock_unavailable", "stock locks unavailable, retry later", { cause });
    }
    throw new DomainError("lock_contention", "products are busy, retry", { cause });
  }

  /** Extends the lock ahead of its expiry until stopped; aborts `signal` if it cannot. */
  function keep(first: Lock) {
    const lost = new AbortController();
    let lock = first;
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    let inFlight: Promise<void> | undefined;
    const tick = () => {
      inFlight = extend();
    };
    const schedule = (ms: number) => {
      timer = setTimeout(tick, Math.max(0, ms));
    };
    const extend = async (): Promise<void> => {
      try {
        lock = await lock.extend(opts.ttlMs);
        if (!stopped) schedule(lock.expiration - Date.now() - opts.automaticExtensionThresholdMs);
      } catch (err) {
        if (stopped) {
          log.warn({ err }, "stock lock extension failed after the work finished");
        } else if (lock.expiration > Date.now()) {
          schedule(opts.retryDelayMs); // still held: try again before it expires
        } else {
          log.warn({ err, resources: lock.resources }, "stock lock lost");
          observer?.heldLockFailed("lost");
          lost.abort(new DomainError("lock_unavailable", "stock lock lost, retry later", { cause: err }));
        }
      }
    };
    schedule(lock.expiration - Date.now() - opts.automaticExtensionThresholdMs);
    return {
      signal: lost.signal,
      async stop(): Promise<Lock> {
        stopped = true;
        clearTimeout(timer);
        await inFlight;
        return lock;
      },
    };
  }

  async function release(lock: Lock): Promise<void> {
    try {
      await redlock.release(lock);
    } catch (err) {
      // The caller's work has committed; the keys expire on their own within the TTL.
      log.warn({ err, resources: lock.resources }, "stock lock release failed");
      observer?.heldLockFailed("release_failed");
    }
  }

  return {
    async withLocks(keys, fn, callerSignal) {
      if (callerSignal?.aborted) throw deadlineExceeded();
      const resources = [...new Set(keys)].sort().map((key) => PREFIX + key);
      if (resources.length === 0) return fn(new AbortController().signal);
      const started = performance.now();
      const waited = () => (performance.now() - started) / 1000;
      let lock: Lock;
      try {
        lock = await acquire(resources, callerSignal);
      } catch (e) {
        observer?.acquireEnded(waited(), failureOutcome(e));
        throw e;
      }
      if (callerSignal?.aborted) {
        observer?.acquireEnded(waited(), "deadline_exceeded");
        await release(lock);
        throw deadlineExceeded();
      }
      observer?.acquireEnded(waited(), "acquired");
      const held = keep(lock);
      try {
        return await fn(held.signal);
      } finally {
        await release(await held.stop());
      }
    },
    async quorumReachable() {
      const answers = await Promise.allSettled(clients.map((client) => client.ping()));
      return answers.filter((a) => a.status === "fulfilled").length > clients.length / 2;
    },
    async close() {
      await Promise.allSettled(clients.map((c) => (c.status === "ready" ? c.quit() : c.disconnect())));
      for (const client of clients) client.disconnect();
    },
  };
}

/** True when the failed attempt could not reach a quorum at all (as opposed to finding the keys held). */
async function quorumUnreachable(error: ExecutionError): Promise<boolean> {
  const stats = await error.attempts[error.attempts.length - 1];
  if (!stats) return true;
  const down = [...stats.votesAgainst.values()].filter((e) => !(e instanceof ResourceLockedError)).length;
  return stats.membershipSize - down < stats.quorumSize;
}

function connect(url: string, node: number, log: Logger): Redis {
  const client = new Redis(url, {
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    connectTimeout: CONNECT_TIMEOUT_MS,
    commandTimeout: COMMAND_TIMEOUT_MS,
    lazyConnect: false,
    retryStrategy: (times) => Math.min(times * 100, 2000), // never give up: a restarted node rejoins
  });
  client.on("error", (err) => log.debug({ err, node }, "redis lock node error"));
  return client;
}

function resolveOptions(o: Partial<LockOptions> = {}): LockOptions {
  const ttlMs = o.ttlMs ?? 5000;
  const resolved: LockOptions = {
    ttlMs,
    retryCount: o.retryCount ?? 10,
    retryDelayMs: o.retryDelayMs ?? 50,
    retryJitterMs: o.retryJitterMs ?? 50,
    automaticExtensionThresholdMs: o.automaticExtensionThresholdMs ?? Math.min(1000, Math.floor(ttlMs / 3)),
  };
  const threshold = resolved.automaticExtensionThresholdMs;
  if (!Number.isInteger(ttlMs) || threshold <= 0 || threshold >= ttlMs) {
    throw new Error("stock locks: ttlMs must be an integer above automaticExtensionThresholdMs (> 0)");
  }
  return resolved;
}

function failureOutcome(e: unknown): "contention" | "unavailable" | "deadline_exceeded" | "error" {
  if (!(e instanceof DomainError)) return "error";
  if (e.reason === "lock_contention") return "contention";
  if (e.reason === "lock_unavailable") return "unavailable";
  return e.reason === "deadline_exceeded" ? "deadline_exceeded" : "error";
}

function deadlineExceeded(): DomainError {
  return new DomainError("deadline_exceeded", "the deadline passed while waiting for stock locks");
}
