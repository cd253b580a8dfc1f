/**
 * The bare limit (issue 5, scenario 2): the least a reservation can cost on this stack. A minimal
 * @grpc/grpc-js server implementing only ReservationService.CreateReservation, no auth, no ORM: the
 * reservation is ONE SQL statement sent with `pg` (stock decrement, hold, ledger row, reservation,
 * its item, idempotency record), on the buyer's shard, which the bench makes the product's shard.
 * Env: SHARD_URLS (comma-separated), PORT, DB_POOL_MAX (default 10).
 */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { newId } from "../../src/shard/ids.js";
import { bucketOfUser, contiguousBucketMap } from "../../src/shard/router.js";
import { pgPool } from "../lib/pg.js";

const urls = (process.env.SHARD_URLS ?? "").split(",").filter((u) => u !== "");
const pools = urls.map((url) => pgPool(url, Number(process.env.DB_POOL_MAX ?? 10)));
const map = contiguousBucketMap(urls.length);

const RESERVE = `with s as (
    update stock set available = available - $3, held = held + $3, version = version + 1, updated_at = now()
    where product_id = $2 and available >= $3 and warehouse_id = coalesce(nullif($4, ''),
      (select warehouse_id from stock where product_id = $2 and available >= $3
       order by available desc, warehouse_id limit 1))
    returning product_id, warehouse_id
  ), r as (
    insert into reservations (id, bucket, user_id, status, expires_at)
    select $1, $5, $6, 'active', now() + interval '10 minutes' from s
    returning id, expires_at, created_at
  ), i as (
    insert into reservation_items (reservation_id, product_id, warehouse_id, quantity)
    select $1, product_id, warehouse_id, $3 from s
  ), h as (
    insert into stock_holds (reservation_id, product_id, warehouse_id, quantity, status)
    select $1, product_id, warehouse_id, $3, 'held' from s
  ), m as (
    insert into stock_movements (id, product_id, warehouse_id, kind, quantity,
      d_available, d_held, d_sold, d_received, d_written_off, reason, reference)
    select $7, product_id, warehouse_id, 'held', $3, -$3, $3, 0, 0, 0, 'reservation', $1 from s
  ), k as (
    insert into idempotency_records (scope, key, request_hash, response)
    select 'bare:' || $6, $8, '', '{}'::jsonb from s
  )
  select s.warehouse_id, extract(epoch from r.expires_at)::float8 as expires,
    extract(epoch from r.created_at)::float8 as created from s, r`;

interface Req {
  user_id: string;
  items: { product_id: string; quantity: string; warehouse_id: string }[];
  idempotency_key: string;
}
type Row = { warehouse_id: string; expires: number; created: number };

const ts = (epoch: number) => ({ seconds: String(Math.floor(epoch)), nanos: Math.round((epoch % 1) * 1e9) });

async function reserve(req: Req): Promise<object> {
  const item = req.items[0];
  if (!item || req.items.length !== 1 || req.user_id === "" || req.idempotency_key === "")
    throw Object.assign(new Error("one item, a user_id and an idempotency_key"), {
      code: grpc.status.UNIMPLEMENTED,
    });
  const bucket = bucketOfUser(req.user_id);
  const pool = pools[map.shardOf(bucket)];
  const id = newId("res", bucket);
  const quantity = Number(item.quantity);
  const { rows } = await (pool as (typeof pools)[number]).query<Row>(RESERVE, [
    id,
    item.product_id,
    quantity,
    item.warehouse_id,
    bucket,
    req.user_id,
    newId("mov", bucket),
    req.idempotency_key,
  ]);
  const row = rows[0];
  if (!row) throw Object.assign(new Error("insufficient stock"), { code: grpc.status.FAILED_PRECONDITION });
  const created = ts(row.created);
  return {
    reservation: {
      id,
      user_id: req.user_id,
      status: "RESERVATION_STATUS_ACTIVE",
      items: [{ product_id: item.product_id, warehouse_id: row.warehouse_id, quantity: item.quantity }],
      expire_time: ts(row.expires),
      create_time: created,
      update_time: created,
      version: "1",
    },
  };
}

const def = protoLoader.loadSync("shop/reservation/v1/reservation.proto", {
  includeDirs: ["proto"],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
});
const pkg = grpc.loadPackageDefinition(def) as unknown as {
  shop: { reservation: { v1: { ReservationService: grpc.ServiceClientConstructor } } };
};
const server = new grpc.Server();
server.addService(pkg.shop.reservation.v1.ReservationService.service, {
  CreateReservation: (call: grpc.ServerUnaryCall<Req, object>, done: grpc.sendUnaryData<object>) => {
    reserve(call.request).then(
      (res) => done(null, res),
      (e: Error & { code?: number | string }) => {
        // pg errors carry a string SQLSTATE in `code`: only numbers are gRPC statuses.
        if (typeof e.code === "number") return done({ code: e.code, details: e.message });
        process.stderr.write(`bare: ${e.message}\n`);
        done({ code: grpc.status.INTERNAL, details: "internal error" });
      },
    );
  },
});
server.bindAsync(`127.0.0.1:${process.env.PORT ?? 0}`, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) throw err;
});
process.on("SIGTERM", () => {
  server.forceShutdown();
  void Promise.all(pools.map((p) => p.end())).then(() => process.exit(0));
});
