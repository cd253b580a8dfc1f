import { Redis } from "ioredis";
import type { Logger } from "pino";
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from "rate-limiter-flexible";
import type { Principal } from "../auth/principal.js";
import { DomainError } from "../errors.js";

/**
 * Per-principal call allowance, shared by every instance through Redis (rate-limiter-flexible's
 * fixed one-second windows): a caller gets `perSecond` calls per second in total, whichever
 * instances serve them. Plain users and service/operator principals have separate allowances (0 =
 * no limit). If Redis cannot be reached the check falls back to an in-process limiter with the same
 * allowance, so a Redis outage loosens the limit to "per instance" instead of refusing every call.
 */
export interface RateLimitOptions {
  /** The Redis node holding the counters (the first of REDIS_URLS). */
  redisUrl: string;
  /** Calls per second per plain user; 0 turns the limit off. */
  userPerSecond: number;
  /** Calls per second per service or operator principal; 0 turns the limit off. */
  servicePerSecond: number;
  logger: Logger;
  /** Key prefix, so that several deployments (or test runs) can share one Redis. */
  prefix?: string;
}

export interface RateLimit {
  /** Counts one call of `p`; throws rate_limited (RESOURCE_EXHAUSTED) when over its allowance. */
  take(p: Principal): Promise<void>;
  /**
   * Resolves once Redis is connected, or after `timeoutMs` (calls before that are counted by the
   * in-process fallback only): a starting instance waits for it so it does not begin with a loose limit.
   */
  ready(timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

export function createRateLimit(opts: RateLimitOptions): RateLimit {
  const prefix = opts.prefix ?? "shop:rate";
  const needed = opts.userPerSecond > 0 || opts.servicePerSecond > 0;
  // A fixed, short command timeout and no offline queue: a Redis outage must cost milliseconds per
  // call (then the in-process fallback answers), never a stalled call.
  const redis = needed
    ? new Redis(opts.redisUrl, {
        enableOfflineQueue: false,
        maxRetriesPerRequest: 1,
        commandTimeout: 200,
        lazyConnect: false,
      })
    : undefined;
  redis?.on("error", (err) => opts.logger.debug({ err }, "rate limit redis error"));
  const limiter = (points: number, kind: string) =>
    points > 0 && redis
      ? new RateLimiterRedis({
          storeClient: redis,
          keyPrefix: `${prefix}:${kind}`,
          points,
          duration: 1,
          insuranceLimiter: new RateLimiterMemory({
            keyPrefix: `${prefix}:${kind}:local`,
            points,
            duration: 1,
          }),
        })
      : undefined;
  const users = limiter(opts.userPerSecond, "user");
  const services = limiter(opts.servicePerSecond, "service");

  return {
    async take(p) {
      const l = p.operator || p.service ? services : users;
      if (!l) return;
      try {
        await l.consume(p.subject);
      } catch (e) {
        if (!(e instanceof RateLimiterRes)) throw e;
        const retryMs = Math.max(1, Math.ceil(e.msBeforeNext));
        throw new DomainError("rate_limited", `too many calls: retry in ${retryMs} ms`, {
          details: { retryAfterMs: retryMs },
        });
      }
    },
    async ready(timeoutMs) {
      if (!redis || redis.status === "ready") return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, timeoutMs);
        function done() {
          clearTimeout(timer);
          redis?.off("ready", done);
          resolve();
        }
        redis.once("ready", done);
      });
    },
    async close() {
      redis?.disconnect();
    },
  };
}
