/**
 * The naive baseline (issue 5, scenario 2): the seeds' approach, served by connect-node with no auth.
 * CreateReservation loads the stock row with SELECT … FOR UPDATE through the ORM, modifies it, and
 * lets the unit of work flush it with new entities (ledger row, reservation, item, hold, idempotency
 * record) in one transaction: the same rows the product writes, the ORM way.
 * Env: SHARD_URLS, PORT (gRPC and Connect over h2c), PORT_HTTP1 (Connect over HTTP/1.1), DB_POOL_MAX.
 */
import { createServer } from "node:http";
import { createServer as createH2Server } from "node:http2";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { defineEntity, LockMode, p } from "@mikro-orm/core";
import { pino } from "pino";
import {
  type CreateReservationRequest,
  CreateReservationResponseSchema,
  ReservationService,
  ReservationStatus,
} from "../../gen/shop/reservation/v1/reservation_pb.js";
import { IdempotencyRecord } from "../../src/idempotency/idempotency.entity.js";
import { inventoryEntities, Stock, StockMovement } from "../../src/inventory/inventory.entity.js";
import { newId } from "../../src/shard/ids.js";
import { bucketOfUser } from "../../src/shard/router.js";
import { openShards } from "../../src/shard/shards.js";

const Reservation = defineEntity({
  name: "BenchReservation",
  tableName: "reservations",
  properties: {
    id: p.string().primary(),
    bucket: p.smallint(),
    userId: p.string(),
    status: p.string(),
    expiresAt: p.datetime(),
  },
});
const ReservationItem = defineEntity({
  name: "BenchReservationItem",
  tableName: "reservation_items",
  properties: {
    reservationId: p.string().primary(),
    productId: p.string().primary(),
    warehouseId: p.string(),
    quantity: p.bigint("number"),
  },
});
const StockHold = defineEntity({
  name: "BenchStockHold",
  tableName: "stock_holds",
  properties: {
    reservationId: p.string().primary(),
    productId: p.string().primary(),
    warehouseId: p.string(),
    quantity: p.bigint("number"),
    status: p.string(),
  },
});

const shards = await openShards({
  urls: (process.env.SHARD_URLS ?? "").split(","),
  entities: [...inventoryEntities, IdempotencyRecord, Reservation, ReservationItem, StockHold],
  migrations: [],
  poolMax: Number(process.env.DB_POOL_MAX ?? 10),
  bucketMap: null,
  logger: pino({ level: "warn" }),
});

async function reserve(req: CreateReservationRequest) {
  const item = req.items[0];
  if (!item || req.items.length !== 1) throw new ConnectError("one item", Code.Unimplemented);
  const bucket = bucketOfUser(req.userId);
  const id = newId("res", bucket);
  const q = Number(item.quantity);
  const now = new Date();
  const expiresAt = new Date(now.getTime() + 600_000);
  const stock = await shards
    .forBucket(bucket)
    .fork()
    .transactional(async (em) => {
      const row = await em.findOne(
        Stock,
        { productId: item.productId, available: { $gte: q } },
        { lockMode: LockMode.PESSIMISTIC_WRITE, orderBy: { available: "desc" } },
      );
      if (!row) throw new ConnectError("insufficient stock", Code.FailedPrecondition);
      row.available -= q;
      row.held += q;
      row.version += 1;
      row.updatedAt = now;
      const at = { productId: item.productId, warehouseId: row.warehouseId };
      em.create(Reservation, { id, bucket, userId: req.userId, status: "active", expiresAt });
      // No relations declared: the unit of work does not know the item needs its reservation first.
      await em.flush();
      em.create(ReservationItem, { reservationId: id, ...at, quantity: q });
      em.create(StockHold, { reservationId: id, ...at, quantity: q, status: "held" });
      em.create(StockMovement, {
        id: newId("mov", bucket),
        ...at,
        kind: "held",
        quantity: q,
        dAvailable: -q,
        dHeld: q,
        dSold: 0,
        dReceived: 0,
        dWrittenOff: 0,
        reason: "reservation",
        reference: id,
        createdAt: now,
      });
      em.create(IdempotencyRecord, {
        scope: `naive:${req.userId}`,
        key: req.idempotencyKey,
        requestHash: "",
        response: { id },
        createdAt: now,
      });
      return row;
    });
  return create(CreateReservationResponseSchema, {
    reservation: {
      id,
      userId: req.userId,
      status: ReservationStatus.ACTIVE,
      items: [{ productId: item.productId, warehouseId: stock.warehouseId, quantity: item.quantity }],
      expireTime: timestampFromDate(expiresAt),
      createTime: timestampFromDate(now),
      updateTime: timestampFromDate(now),
      version: 1n,
    },
  });
}

const handler = connectNodeAdapter({
  routes(router) {
    router.service(ReservationService, {
      createReservation: (req) =>
        reserve(req).catch((e: unknown) => {
          if (!(e instanceof ConnectError)) process.stderr.write(`naive: ${String(e)}\n`);
          throw e;
        }),
      getReservation: unimplemented,
      listReservations: unimplemented,
      releaseReservation: unimplemented,
      extendReservation: unimplemented,
    });
  },
});
function unimplemented(): never {
  throw new ConnectError("not in the baseline", Code.Unimplemented);
}

const h2 = createH2Server(handler).listen(Number(process.env.PORT ?? 0), "127.0.0.1");
const h1 = createServer(handler).listen(Number(process.env.PORT_HTTP1 ?? 0), "127.0.0.1");
process.on("SIGTERM", () => {
  h2.close();
  h1.close();
  void shards.close().then(() => process.exit(0));
});
