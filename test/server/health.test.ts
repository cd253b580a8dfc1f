import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/grpc/health/v1/health_pb.js";
import { startTestServer, type TestServer, transports } from "./fixture.js";

describe("grpc.health.v1.Health", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.drain(1000));

  const health = () => createClient(Health, transports(server.baseUrl)["grpc-h2c"] ?? fail());

  it("checks the process and each served service", async () => {
    expect((await health().check({ service: "" })).status).toBe(Status.SERVING);
    server.health.set("shop.order.v1.OrderService", "NOT_SERVING");
    expect((await health().check({ service: "shop.order.v1.OrderService" })).status).toBe(Status.NOT_SERVING);
    expect((await health().check({ service: "shop.inventory.v1.InventoryService" })).status).toBe(
      Status.SERVING,
    );
    server.health.set("shop.order.v1.OrderService", "SERVING");
  });

  it("answers NOT_FOUND for an unknown service", async () => {
    const err = ConnectError.from(
      await health()
        .check({ service: "no.such.Service" })
        .catch((e: unknown) => e),
    );
    expect(err.code).toBe(Code.NotFound);
  });

  it("lists every service with its status", async () => {
    const { statuses } = await health().list({});
    expect(Object.keys(statuses).sort()).toEqual([
      "",
      "shop.inventory.v1.InventoryService",
      "shop.order.v1.OrderService",
    ]);
    expect(statuses[""]?.status).toBe(Status.SERVING);
  });

  it("watch of an unknown service says SERVICE_UNKNOWN, then the status once it is known", async () => {
    const abort = new AbortController();
    const seen: Status[] = [];
    const it = health().watch({ service: "late.Service" }, { signal: abort.signal })[Symbol.asyncIterator]();
    seen.push(((await it.next()).value as { status: Status }).status);
    server.health.set("late.Service", "SERVING");
    seen.push(((await it.next()).value as { status: Status }).status);
    abort.abort();
    expect(seen).toEqual([Status.SERVICE_UNKNOWN, Status.SERVING]);
  });
});

describe("health across a drain", () => {
  it("starts NOT_SERVING until the app says otherwise", async () => {
    const server = await startTestServer({}, { serving: false });
    const health = createClient(Health, transports(server.baseUrl)["connect-json-http1"] ?? fail());
    expect((await health.check({})).status).toBe(Status.NOT_SERVING);
    expect((await health.check({ service: "shop.order.v1.OrderService" })).status).toBe(Status.NOT_SERVING);
    server.health.set("", "SERVING");
    expect((await health.check({})).status).toBe(Status.SERVING);
    await server.drain(1000);
  });

  it("a watcher sees NOT_SERVING, then its stream ends", async () => {
    const server = await startTestServer();
    const health = createClient(Health, transports(server.baseUrl)["grpc-h2c"] ?? fail());
    const seen: Status[] = [];
    const watching = (async () => {
      for await (const res of health.watch({ service: "" })) {
        seen.push(res.status);
        if (seen.length === 1) void server.drain(2000);
      }
    })();
    await watching; // ends on its own: the server closes the stream
    expect(seen).toEqual([Status.SERVING, Status.NOT_SERVING]);
    await server.drain(2000);
    server.health.setAll("SERVING"); // a late startup step must not undo the drain
    expect(server.health.get("")).toBe("NOT_SERVING");
  });
});

function fail(): never {
  throw new Error("no transport");
}
