/**
 * A server on a free loopback port with a fake InventoryService (GetProduct) and OrderService
 * (WatchOrder), so src/server is tested over real sockets without databases.
 */

import { setTimeout as sleep } from "node:timers/promises";
import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter, Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { pino } from "pino";
import { GetProductResponseSchema, InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import { OrderService, WatchOrderResponseSchema } from "../../gen/shop/order/v1/order_pb.js";
import { DomainError } from "../../src/errors.js";
import {
  type RunningServer,
  type ServerOptions,
  shutdownSignalKey,
  startServer,
} from "../../src/server/server.js";

/** The product GetProduct answers for id "ok". */
export const okProduct = { id: "ok", sellerId: "seller-1", sku: "SKU-1", name: "Teapot", version: 3n };

/** Milliseconds GetProduct("slow") takes. */
export const slowMs = 600;

function routes(router: ConnectRouter): void {
  router.service(InventoryService, {
    async getProduct(req, ctx) {
      if (req.productId === "ok") return create(GetProductResponseSchema, { product: okProduct });
      if (req.productId === "boom") throw new Error("SELECT secret FROM host db-1");
      if (req.productId === "slow") {
        await sleep(slowMs, undefined, { signal: ctx.signal }); // like a query: cancelled with the call
        return create(GetProductResponseSchema, { product: okProduct });
      }
      if (req.productId === "stuck") await new Promise(() => {}); // never answers, ignores its signal
      throw new DomainError("not_found", `product ${req.productId} not found`, { field: "product_id" });
    },
  });
  router.service(OrderService, {
    // A watch stream the way the app writes them: heartbeats until the server drains.
    async *watchOrder(_req, ctx) {
      const shutdown = ctx.values.get(shutdownSignalKey);
      while (!shutdown.aborted && !ctx.signal.aborted) {
        yield create(WatchOrderResponseSchema, {
          message: { case: "heartbeat", value: { serverTime: timestampNow() } },
        });
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, 50);
          shutdown.addEventListener("abort", () => {
            clearTimeout(t);
            resolve();
          });
        });
      }
    },
  });
}

/** Log lines the server wrote, parsed. */
export type LogLine = Record<string, unknown> & { level: number; msg: string };

/** A running test server and the log lines it wrote. */
export interface TestServer extends RunningServer {
  logs: LogLine[];
  baseUrl: string;
}

/** Starts the fake server on 127.0.0.1 port 0 and, unless told not to, sets it SERVING. */
export async function startTestServer(
  overrides: Partial<ServerOptions> = {},
  { serving = true } = {},
): Promise<TestServer> {
  const logs: LogLine[] = [];
  const logger = pino(
    { level: "debug" },
    { write: (line: string) => logs.push(JSON.parse(line) as LogLine) },
  );
  const server = await startServer({
    host: "127.0.0.1",
    port: 0,
    routes,
    servedServices: [InventoryService, OrderService],
    corsOrigins: ["https://shop.example"],
    maxRequestBytes: 64 * 1024,
    defaultTimeoutMs: 5_000,
    maxTimeoutMs: 10_000,
    logger,
    ...overrides,
  });
  if (serving) server.health.setAll("SERVING");
  return Object.assign(server, { logs, baseUrl: `http://127.0.0.1:${server.port}` });
}

/** The four connect-node transports, all against the same port. */
export function transports(baseUrl: string): Record<string, Transport> {
  return {
    "connect-json-http1": createConnectTransport({ baseUrl, httpVersion: "1.1" }),
    "connect-binary-h2c": createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true }),
    "grpc-h2c": createGrpcTransport({ baseUrl }),
    "grpc-web-http1": createGrpcWebTransport({ baseUrl, httpVersion: "1.1" }),
  };
}
