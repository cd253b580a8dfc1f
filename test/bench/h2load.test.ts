import { once } from "node:events";
import { createServer as createHttpServer } from "node:http";
import { createServer, type Http2Server } from "node:http2";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { childCpuMs, codesBetween, h2loadGrpc, rpcCodes } from "../../bench/lib/h2load.js";

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

/** A plain h2c server that records each request and answers with `status` (gRPC-style trailers on 200). */
async function h2Server(status: number) {
  const seen: { path: string; auth: string; type: string; body: Buffer }[] = [];
  const server: Http2Server = createServer();
  server.on("stream", (stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on("data", (d: Buffer) => chunks.push(d));
    stream.on("end", () => {
      seen.push({
        path: String(headers[":path"]),
        auth: String(headers.authorization),
        type: String(headers["content-type"]),
        body: Buffer.concat(chunks),
      });
      stream.respond({ ":status": status, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "16" }));
      stream.end(status === 200 ? Buffer.from([0, 0, 0, 0, 0]) : undefined);
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  closers.push(() => new Promise((resolve) => server.close(() => resolve())));
  return { port: (server.address() as AddressInfo).port, seen };
}

describe("h2loadGrpc", () => {
  const body = Buffer.from([0, 0, 0, 0, 3, 10, 1, 65]);

  it("sends calls + 1 identical gRPC requests one at a time and reports the last `calls` latencies", async () => {
    const { port, seen } = await h2Server(200);
    const run = await h2loadGrpc({ port, path: "/pkg.Svc/Method", body, bearer: "tok", calls: 5 });
    expect(seen).toHaveLength(6);
    for (const r of seen) {
      expect(r).toMatchObject({ path: "/pkg.Svc/Method", auth: "Bearer tok", type: "application/grpc" });
      expect(r.body.equals(body)).toBe(true);
    }
    expect(run.latenciesMs).toHaveLength(5);
    for (const ms of run.latenciesMs) expect(ms).toBeGreaterThan(0);
    expect(run.failed).toBe(0);
    expect(run.cpuMs).toBeGreaterThanOrEqual(0);
  });

  it("counts answers that are not HTTP 200 as failed (a gRPC error in 200's trailers it cannot see)", async () => {
    const { port } = await h2Server(503);
    const run = await h2loadGrpc({ port, path: "/pkg.Svc/Method", body, bearer: "tok", calls: 3 });
    expect(run.failed).toBe(4);
    expect(run.latenciesMs).toEqual([]);
  });
});

describe("rpcCodes", () => {
  it("reads the server's finished calls of one method by code, and codesBetween takes the difference", async () => {
    let text = [
      "# HELP rpc_server_duration_seconds x",
      'rpc_server_duration_seconds_bucket{le="0.01",service="shop.order.v1.OrderService",method="ListOrders",code="ok"} 3',
      'rpc_server_duration_seconds_count{service="shop.order.v1.OrderService",method="ListOrders",code="ok"} 7',
      'rpc_server_duration_seconds_count{service="shop.order.v1.OrderService",method="ListOrders",code="unauthenticated"} 2',
      'rpc_server_duration_seconds_count{service="shop.order.v1.OrderService",method="GetOrder",code="ok"} 9',
    ].join("\n");
    const server = createHttpServer((_req, res) => res.end(text));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    closers.push(() => new Promise((resolve) => server.close(() => resolve())));
    const port = (server.address() as AddressInfo).port;
    const before = await rpcCodes(port, "shop.order.v1.OrderService", "ListOrders");
    expect(before).toEqual({ ok: 7, unauthenticated: 2 });
    text = text.replace('code="ok"} 7', 'code="ok"} 12');
    const after = await rpcCodes(port, "shop.order.v1.OrderService", "ListOrders");
    expect(codesBetween(before, after)).toEqual({ ok: 5 });
  });
});

describe("childCpuMs", () => {
  it("adds user and system time of the children's line of bash's times", () => {
    expect(childCpuMs("0m0.001s 0m0.002s\n0m0.030s 0m0.022s\n")).toBeCloseTo(52, 6);
    expect(childCpuMs("0m0.000s 0m0.000s\n1m2.500s 0m0.500s")).toBeCloseTo(63_000, 6);
  });

  it("refuses output it does not understand", () => {
    expect(() => childCpuMs("nothing")).toThrow(/times/);
  });
});
