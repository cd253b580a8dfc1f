import { writeSync } from "node:fs";
import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { InventoryService } from "../gen/shop/inventory/v1/inventory_pb.js";
import { OrderService } from "../gen/shop/order/v1/order_pb.js";
import { ReservationService } from "../gen/shop/reservation/v1/reservation_pb.js";
import type { DevTokens } from "./auth/dev.js";
import { createServerAuth } from "./auth/gate.js";
import { principalKey } from "./auth/principal.js";
import { setupAuth } from "./auth/setup.js";
import type { Config } from "./config.js";
import { IdempotencyRecord } from "./idempotency/idempotency.entity.js";
import { inventoryEntities } from "./inventory/inventory.entity.js";
import { inventoryHandler } from "./inventory/inventory.handler.js";
import { createInventoryService } from "./inventory/inventory.service.js";
import { createRateLimit, type RateLimit } from "./limits/rate-limit.js";
import { createStockLocks, type StockLocks } from "./lock/locks.js";
import { migrations } from "./migrations/index.js";
import { createMetrics } from "./observability/metrics.js";
import { createTracing, type SpanExporter, type Tracing } from "./observability/tracing.js";
import { orderHandler } from "./order/order.handler.js";
import { createOrderService } from "./order/order.service.js";
import { createOrderBus, type OrderBus } from "./order/order-bus.js";
import { createWatchHub, type WatchHub } from "./order/watch.js";
import { reservationHandler } from "./reservation/reservation.handler.js";
import { createReservationService } from "./reservation/reservation.service.js";
import { createSweeper, type Sweeper } from "./reservation/sweeper.js";
import { type RunningServer, startServer } from "./server/server.js";
import { openShards, type ShardSet } from "./shard/shards.js";

/** Configuration with the shard and Redis addresses resolved (given, or started by the embedded default). */
export type AppConfig = Omit<Config, "shardUrls" | "redisUrls"> & {
  shardUrls: string[];
  redisUrls: string[];
};

export interface App {
  readonly server: RunningServer;
  readonly shards: ShardSet;
  readonly locks: StockLocks;
  readonly sweeper: Sweeper;
  readonly orderBus: OrderBus;
  readonly watchHub: WatchHub;
  /** This app's Prometheus registry (what GET /metrics serves). */
  readonly metrics: Registry;
  readonly tracing: Tracing;
  /** AUTH_DEV=true only: tokens to call this process with (main prints them); null otherwise. */
  readonly devTokens: DevTokens | null;
  /** Health NOT_SERVING, drain calls and streams, then close pools and Redis clients. */
  shutdown(): Promise<void>;
}

/** What tests may inject into createApp. */
export interface CreateAppOptions {
  /** Every span goes to this exporter at once, whatever OTEL_EXPORTER says. */
  spanExporter?: SpanExporter;
}

/** Every entity mapped on every shard (the same schema everywhere). */
export const entities = [...inventoryEntities, IdempotencyRecord];

/**
 * The one composition root: opens the shards, the lock quorum and the server, and wires the services
 * this process serves (SERVICES). Only this file sees both infrastructure and service folders.
 */
export async function createApp(
  config: AppConfig,
  logger: Logger,
  options: CreateAppOptions = {},
): Promise<App> {
  // First: a process without token verification must not start at all (ConfigError names the settings).
  const auth = await setupAuth(config, logger);
  const metrics = createMetrics();
  const tracing = createTracing({
    exporter: config.otelExporter,
    endpoint: config.otelEndpoint,
    serviceName: config.otelServiceName,
    ...(options.spanExporter && { spanExporter: options.spanExporter }),
  });
  const shards = await openShards({
    urls: config.shardUrls,
    entities,
    migrations,
    poolMax: config.dbPoolMax,
    bucketMap: config.bucketMap,
    logger,
    statementTimeoutMs: config.maxDeadlineMs,
    ...(tracing.enabled && { traceQuery: tracing.traceQuery }),
  }).catch(async (e: unknown) => {
    await tracing.shutdown();
    throw e;
  });
  metrics.observeShards(shards.shards);
  let locks: StockLocks | undefined;
  let bus: OrderBus | undefined;
  let hub: WatchHub | undefined;
  let limits: RateLimit | undefined;
  try {
    if (config.migrateOnStart) await shards.migrateAll();
    locks = createStockLocks({
      redisUrls: config.redisUrls,
      options: { ttlMs: config.lockTtlMs, retryCount: 40 },
      logger,
      observer: { acquireEnded: metrics.lockAcquireEnded, heldLockFailed: metrics.heldLockFailed },
    });
    const inventory = createInventoryService({ shards });
    const lockClient = locks;
    const reservations = createReservationService({
      shards,
      locks: lockClient,
      logger,
      intentTimeoutSeconds: config.intentTimeoutMs / 1000,
      faultPoint: (point) => {
        if (config.faultPoint === point) faultKill(point);
      },
    });
    const orderBus = createOrderBus({ redisUrls: config.redisUrls, logger });
    bus = orderBus;
    const watchHub = createWatchHub(
      { shards, bus: orderBus, logger },
      { heartbeatMs: config.streamHeartbeatMs },
    );
    hub = watchHub;
    metrics.observeWatchStreams(() => watchHub.openStreams());
    const orders = createOrderService({
      shards,
      reservations,
      logger,
      publish: (events) => orderBus.publish(events),
      faultPoint: (point) => {
        if (config.faultPoint === point) faultKill(point);
      },
      itemsReservationTtlS: Math.min(config.reservationDefaultTtlS, 300),
    });
    const sweeper = createSweeper(
      { shards, logger, repairOrders: (shard, olderThan) => orders.repairShard(shard, olderThan) },
      {
        intervalMs: config.sweepIntervalMs,
        intentTimeoutSeconds: config.intentTimeoutMs / 1000,
        idempotencyRetentionSeconds: config.idempotencyRetentionH * 3600,
      },
    );
    metrics.observeSweeper(sweeper.counts);
    const rateLimit = createRateLimit({
      redisUrl: config.redisUrls[0] as string,
      userPerSecond: config.rateLimitUserRps,
      servicePerSecond: config.rateLimitServiceRps,
      logger,
    });
    limits = rateLimit;
    await rateLimit.ready(2000);
    const access = createServerAuth(
      auth.verifier,
      { sellerOf: async (productId) => (await inventory.getProduct(productId)).sellerId },
      logger,
    );
    const served: DescService[] = [];
    const routes = (router: ConnectRouter): void => {
      if (config.services.includes("inventory"))
        router.service(InventoryService, inventoryHandler(inventory));
      if (config.services.includes("reservation")) {
        router.service(
          ReservationService,
          reservationHandler(reservations, {
            defaultS: config.reservationDefaultTtlS,
            maxS: config.reservationMaxTtlS,
          }),
        );
      }
      if (config.services.includes("order")) router.service(OrderService, orderHandler(orders, watchHub));
    };
    if (config.services.includes("inventory")) served.push(InventoryService);
    if (config.services.includes("reservation")) served.push(ReservationService);
    if (config.services.includes("order")) served.push(OrderService);
    const server = await startServer({
      host: config.host,
      port: config.port,
      grpcPort: config.grpcPort,
      routes,
      servedServices: served,
      corsOrigins: config.corsOrigins,
      maxRequestBytes: config.maxRequestBytes,
      defaultTimeoutMs: config.defaultDeadlineMs,
      maxTimeoutMs: config.maxDeadlineMs,
      logger,
      metrics,
      tracing,
      // Authenticate first (the allowance is per principal), then count the call: both before the
      // request body is read.
      requestGate: async (ctx) => {
        await access.gate(ctx);
        const principal = ctx.values.get(principalKey);
        if (principal) await rateLimit.take(principal);
      },
      interceptors: [access.interceptor],
    });
    for (const service of served) server.health.set(service.typeName, "SERVING");
    server.health.set("", "SERVING");
    // Every instance that serves reservations or orders sweeps and repairs (SKIP LOCKED and
    // idempotent steps keep instances from doing the same work twice); SERVICES=inventory does not.
    if (config.services.includes("reservation") || config.services.includes("order")) sweeper.start();
    return {
      server,
      shards,
      locks: lockClient,
      sweeper,
      orderBus,
      watchHub,
      metrics: metrics.registry,
      devTokens: auth.devTokens,
      tracing,
      async shutdown() {
        await sweeper.stop();
        await server.drain(config.drainTimeoutMs);
        await watchHub.close();
        await Promise.allSettled([
          shards.close(),
          lockClient.close(),
          orderBus.close(),
          rateLimit.close(),
          tracing.shutdown(),
        ]);
      },
    };
  } catch (e) {
    await hub?.close().catch(() => undefined);
    await Promise.allSettled([
      shards.close(),
      locks?.close(),
      bus?.close(),
      limits?.close(),
      tracing.shutdown(),
    ]);
    throw e;
  }
}

/**
 * Fault tests only: says where, then SIGKILLs. Written synchronously: pino's default destination is
 * asynchronous and the kill would drop the line.
 */
function faultKill(point: string): never {
  const line = { level: 60, time: Date.now(), point, msg: "FAULT_POINT reached: killing the process" };
  writeSync(1, `${JSON.stringify(line)}\n`);
  process.kill(process.pid, "SIGKILL");
  throw new Error("unreachable: the process was killed");
}
