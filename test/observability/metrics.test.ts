import { setTimeout as delay } from "node:timers/promises";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import { OrderService } from "../../gen/shop/order/v1/order_pb.js";
import { ReservationService, ReservationStatus } from "../../gen/shop/reservation/v1/reservation_pb.js";
import { unique } from "../harness/app.js";
import { client, transportFor } from "../harness/clients.js";
import { expectError } from "../harness/errors.js";
import { migrateShards } from "../harness/global-setup.js";
import { createShardDatabases, dropShardDatabases } from "../harness/shard-databases.js";
import { until } from "../harness/wait.js";
import { seedProduct } from "../inventory/seed.js";
import { userOnShard } from "../reservation/seed.js";
import { sample, samples, scrapeH2c, scrapeHttp1, startObservedApp, type TestApp } from "./helpers.js";

// Issue 6: /metrics. Own shard databases, so the sweeper counts are this file's alone (no other
// file's sweeper expires these reservations), and two shards, so a reservation can be cross-shard.
const prefix = `metrics_${process.pid}`;
let urls: string[] = [];
let app: TestApp;

beforeAll(async () => {
  urls = await createShardDatabases(undefined, 2, prefix);
  await migrateShards(urls);
  // The sweeper only runs when the test says so.
  app = await startObservedApp({ overrides: { shardUrls: urls, sweepIntervalMs: 3_600_000 } });
});
afterAll(async () => {
  await app?.shutdown();
  if (urls.length > 0) await dropShardDatabases(urls);
});

const INVENTORY = "shop.inventory.v1.InventoryService";
const inv = (protocol = "grpc-h2c") => client(InventoryService, transportFor(protocol, app.port));
const res = () => client(ReservationService, transportFor("grpc-h2c", app.port));

describe("GET /metrics", () => {
  it("serves the registry over HTTP/1.1 and h2c, with RPC histograms by service, method and code", async () => {
    const before = (await scrapeHttp1(app.port)).body;
    const product = await seedProduct(inv(), unique("seller"), { stock: { main: 3 } });
    for (const protocol of ["grpc-h2c", "connect-json-http1"]) {
      await inv(protocol).getProduct({ productId: product.id });
      await expectError(inv(protocol).getProduct({ productId: "nope" }), Code.InvalidArgument);
    }
    const h1 = await scrapeHttp1(app.port);
    const h2 = await scrapeH2c(app.port);
    for (const { contentType, body } of [h1, h2]) {
      expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
      const count = (method: string, code: string) =>
        sample(body, "rpc_server_duration_seconds_count", { service: INVENTORY, method, code }) -
        sample(before, "rpc_server_duration_seconds_count", { service: INVENTORY, method, code });
      expect(count("GetProduct", "ok")).toBe(2);
      expect(count("GetProduct", "invalid_argument")).toBe(2);
      expect(count("CreateProduct", "ok")).toBe(1);
      // Buckets are cumulative and end in +Inf with the count.
      const buckets = samples(body, "rpc_server_duration_seconds_bucket").filter(
        (s) => s.labels.method === "GetProduct" && s.labels.code === "ok",
      );
      expect(buckets.at(-1)).toMatchObject({ labels: { le: "+Inf" } });
      expect(buckets.at(-1)?.value).toBe(
        sample(body, "rpc_server_duration_seconds_count", {
          service: INVENTORY,
          method: "GetProduct",
          code: "ok",
        }),
      );
      const started =
        sample(body, "rpc_server_started_total", { service: INVENTORY, method: "GetProduct" }) -
        sample(before, "rpc_server_started_total", { service: INVENTORY, method: "GetProduct" });
      expect(started).toBe(4);
      // Default process metrics on the app's own registry, and the shard pools.
      expect(body).toContain("process_cpu_user_seconds_total");
      expect(body).toContain("nodejs_eventloop_lag_seconds");
      for (const shard of ["0", "1"]) {
        expect(sample(body, "shard_pool_max_connections", { shard })).toBe(10);
        expect(samples(body, "shard_pool_connections").filter((s) => s.labels.shard === shard)).toHaveLength(
          2,
        );
        expect(sample(body, "shard_pool_waiting", { shard })).toBe(0);
      }
    }
    const queries = (text: string) =>
      sample(text, "shard_queries_total", { shard: "0" }) +
      sample(text, "shard_queries_total", { shard: "1" });
    expect(queries(h1.body)).toBeGreaterThan(queries(before));
    // Connections were opened to serve those calls and are idle or in use now.
    const open = samples(h2.body, "shard_pool_connections").reduce((n, s) => n + s.value, 0);
    expect(open).toBeGreaterThan(0);
  });

  it("answers only GET /metrics; other paths still reach the RPC routes", async () => {
    expect((await fetch(`http://127.0.0.1:${app.port}/metrics`, { method: "POST" })).status).not.toBe(200);
    expect((await fetch(`http://127.0.0.1:${app.port}/metricsx`)).status).toBe(404);
    // The RPC routes are unaffected (covered above); a query string is allowed on /metrics.
    expect((await fetch(`http://127.0.0.1:${app.port}/metrics?x=1`)).status).toBe(200);
  });

  it("times the stock locks of a cross-shard reservation", async () => {
    const before = (await scrapeHttp1(app.port)).body;
    const p0 = await seedProduct(inv(), userOnShard(app, 0, "seller"), { stock: { main: 5 } });
    const p1 = await seedProduct(inv(), userOnShard(app, 1, "seller"), { stock: { main: 5 } });
    const { reservation } = await res().createReservation({
      userId: unique("buyer"),
      items: [
        { productId: p0.id, quantity: 1n },
        { productId: p1.id, quantity: 1n },
      ],
      idempotencyKey: unique("k"),
    });
    expect(reservation?.status).toBe(ReservationStatus.ACTIVE);
    const after = (await scrapeHttp1(app.port)).body;
    const acquired = (text: string) => sample(text, "lock_wait_seconds_count", { outcome: "acquired" });
    expect(acquired(after) - acquired(before)).toBe(1);
    expect(sample(after, "lock_wait_seconds_sum", { outcome: "acquired" })).toBeGreaterThan(0);
    // A single-shard reservation takes no lock.
    await res().createReservation({
      userId: unique("buyer"),
      items: [{ productId: p0.id, quantity: 1n }],
      idempotencyKey: unique("k"),
    });
    expect(acquired((await scrapeHttp1(app.port)).body) - acquired(before)).toBe(1);
  });

  it("counts sweeper actions after a sweep", async () => {
    const before = (await scrapeHttp1(app.port)).body;
    const p = await seedProduct(inv(), unique("seller"), { stock: { main: 5 } });
    const buyer = unique("buyer");
    await res().createReservation({
      userId: buyer,
      items: [{ productId: p.id, quantity: 2n }],
      ttl: { seconds: 1n },
      idempotencyKey: unique("k"),
    });
    await delay(1_500); // past the TTL by the database's clock
    await app.sweeper.runOnce();
    const after = (await scrapeH2c(app.port)).body;
    const delta = (action: string) =>
      sample(after, "sweeper_actions_total", { action }) -
      sample(before, "sweeper_actions_total", { action });
    expect(delta("expired")).toBe(1);
    expect(delta("passes")).toBe(1);
    expect(delta("errors")).toBe(0);
    // Every action is exported, and equals the sweeper's own counts since start.
    const counts = app.sweeper.counts;
    expect(
      Object.fromEntries(samples(after, "sweeper_actions_total").map((s) => [s.labels.action, s.value])),
    ).toEqual({
      expired: counts.expired,
      failed_intents: counts.failedIntents,
      orphan_holds_released: counts.orphanHoldsReleased,
      orders_repaired: counts.ordersRepaired,
      idempotency_records_expired: counts.idempotencyRecordsExpired,
      errors: counts.errors,
      passes: counts.passes,
    });
  });

  it("shows open watch streams while they are open, and 0 after", async () => {
    const gauge = async () => sample((await scrapeHttp1(app.port)).body, "watch_streams_open");
    expect(await gauge()).toBe(0);
    const abort = new AbortController();
    const orders = client(OrderService, transportFor("connect-json-http1", app.port));
    const stream = (async () => {
      try {
        for await (const _ of orders.watchOrders({ userId: unique("buyer") }, { signal: abort.signal })) {
          // heartbeats only: nobody changes this user's orders
        }
      } catch {
        // the test aborts the stream
      }
    })();
    await until("the stream is open", () => app.watchHub.openStreams() === 1);
    expect(await gauge()).toBe(1);
    expect(sample((await scrapeH2c(app.port)).body, "watch_streams_open")).toBe(1);
    abort.abort();
    await stream;
    await until("the stream is released", () => app.watchHub.openStreams() === 0);
    expect(await gauge()).toBe(0);
  });
});
