import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import type { Logger } from "pino";
import { InventoryService } from "../gen/shop/inventory/v1/inventory_pb.js";
import { OrderService } from "../gen/shop/order/v1/order_pb.js";
import { ReservationService } from "../gen/shop/reservation/v1/reservation_pb.js";
import type { Config } from "./config.js";
import { IdempotencyRecord } from "./idempotency/idempotency.entity.js";
import { inventoryEntities } from "./inventory/inventory.entity.js";
import { inventoryHandler } from "./inventory/inventory.handler.js";
import { createInventoryService } from "./inventory/inventory.service.js";
import { createStockLocks, type StockLocks } from "./lock/locks.js";
import { migrations } from "./migrations/index.js";
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
  /** Health NOT_SERVING, drain calls and streams, then close pools and Redis clients. */
  shutdown(): Promise<void>;
}

/** Every entity mapped on every shard (the same schema everywhere). */
export const entities = [...inventoryEntities, IdempotencyRecord];

/**
 * The one composition root: opens the shards, the lock quorum and the server, and wires the services
 * this process serves (SERVICES). Only this file sees both infrastructure and service folders.
 */
export async function createApp(config: AppConfig, logger: Logger): Promise<App> {
  const shards = await openShards({
    urls: config.shardUrls,
    entities,
    migrations,
    poolMax: config.dbPoolMax,
    bucketMap: config.bucketMap,
    logger,
  });
  let locks: StockLocks | undefined;
  try {
    if (config.migrateOnStart) await shards.migrateAll();
    locks = createStockLocks({
      redisUrls: config.redisUrls,
      options: { ttlMs: config.lockTtlMs, retryCount: 40 },
      logger,
    });
    const inventory = createInventoryService({ shards });
    const lockClient = locks;
    const reservations = createReservationService({
      shards,
      locks: lockClient,
      logger,
      faultPoint: (point) => {
        if (config.faultPoint !== point) return;
        logger.fatal({ point }, "FAULT_POINT reached: killing the process");
        process.kill(process.pid, "SIGKILL");
      },
    });
    const sweeper = createSweeper(
      { shards, logger },
      { intervalMs: config.sweepIntervalMs, intentTimeoutSeconds: config.intentTimeoutMs / 1000 },
    );
    const served: DescService[] = [];
    const routes = (router: ConnectRouter): void => {
      if (config.services.includes("inventory"))
        router.service(InventoryService, inventoryHandler(inventory));
      // Part of the contract, served by later work: every method answers UNIMPLEMENTED until then.
      if (config.services.includes("reservation")) {
        router.service(
          ReservationService,
          reservationHandler(reservations, {
            defaultS: config.reservationDefaultTtlS,
            maxS: config.reservationMaxTtlS,
          }),
        );
      }
      if (config.services.includes("order")) router.service(OrderService, {});
    };
    if (config.services.includes("inventory")) served.push(InventoryService);
    if (config.services.includes("reservation")) served.push(ReservationService);
    if (config.services.includes("order")) served.push(OrderService);
    const server = await startServer({
      host: config.host,
      port: config.port,
      routes,
      servedServices: served,
      corsOrigins: config.corsOrigins,
      maxRequestBytes: config.maxRequestBytes,
      defaultTimeoutMs: config.defaultDeadlineMs,
      maxTimeoutMs: config.maxDeadlineMs,
      logger,
    });
    for (const service of served) server.health.set(service.typeName, "SERVING");
    server.health.set("", "SERVING");
    // Every instance sweeps (SKIP LOCKED keeps them from doing the same work); the reservation
    // service's processes own it, so a mesh running SERVICES=order alone does not sweep.
    if (config.services.includes("reservation")) sweeper.start();
    return {
      server,
      shards,
      locks: lockClient,
      sweeper,
      async shutdown() {
        await sweeper.stop();
        await server.drain(config.drainTimeoutMs);
        await Promise.allSettled([shards.close(), lockClient.close()]);
      },
    };
  } catch (e) {
    await Promise.allSettled([shards.close(), locks?.close()]);
    throw e;
  }
}
