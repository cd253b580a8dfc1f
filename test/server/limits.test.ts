import * as http2 from "node:http2";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import { startTestServer, type TestServer, transports } from "./fixture.js";

const allowed = "https://shop.example";
const path = "/shop.inventory.v1.InventoryService/GetProduct";
const preflightHeaders = (origin: string) => ({
  origin,
  "access-control-request-method": "POST",
  "access-control-request-headers": "content-type,connect-protocol-version",
});

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ defaultTimeoutMs: 300, maxTimeoutMs: 600 });
});
afterAll(() => server.drain(1000));

/** An OPTIONS/POST over h2c with node:http2, returning the status and response headers. */
async function h2Request(
  baseUrl: string,
  headers: Record<string, string>,
): Promise<http2.IncomingHttpHeaders> {
  const session = http2.connect(baseUrl);
  try {
    return await new Promise((resolve, reject) => {
      const req = session.request({ ":path": path, ...headers });
      req.on("response", (h) => resolve(h));
      req.on("error", reject);
      req.end();
      req.resume();
    });
  } finally {
    session.close();
  }
}

describe("CORS", () => {
  it("answers a preflight from an allowed origin over HTTP/1.1", async () => {
    const res = await fetch(`${server.baseUrl}${path}`, {
      method: "OPTIONS",
      headers: preflightHeaders(allowed),
    });
    expect(res.status).toBe(204);
    expect(res.headers.get("access-control-allow-origin")).toBe(allowed);
    expect(res.headers.get("access-control-allow-methods")).toContain("POST");
    expect(res.headers.get("access-control-allow-headers")?.toLowerCase()).toContain(
      "connect-protocol-version",
    );
  });

  it("answers a preflight from an allowed origin over h2c", async () => {
    const h = await h2Request(server.baseUrl, { ":method": "OPTIONS", ...preflightHeaders(allowed) });
    expect(h[":status"]).toBe(204);
    expect(h["access-control-allow-origin"]).toBe(allowed);
  });

  it("gives a disallowed origin no CORS headers", async () => {
    const res = await fetch(`${server.baseUrl}${path}`, {
      method: "OPTIONS",
      headers: preflightHeaders("https://evil.example"),
    });
    expect(res.headers.get("access-control-allow-origin")).toBeNull();
    const h = await h2Request(server.baseUrl, {
      ":method": "OPTIONS",
      ...preflightHeaders("https://evil.example"),
    });
    expect(h["access-control-allow-origin"]).toBeUndefined();
  });

  it("exposes the headers browsers need on the actual call", async () => {
    const res = await fetch(`${server.baseUrl}${path}`, {
      method: "POST",
      headers: { origin: allowed, "content-type": "application/json", "connect-protocol-version": "1" },
      body: JSON.stringify({ productId: "ok" }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("access-control-allow-origin")).toBe(allowed);
    expect(res.headers.get("access-control-expose-headers")?.toLowerCase()).toContain("grpc-status");
    expect(res.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("sends no CORS headers at all with an empty allow-list", async () => {
    const closed = await startTestServer({ corsOrigins: [] });
    try {
      const res = await fetch(`${closed.baseUrl}${path}`, {
        method: "OPTIONS",
        headers: preflightHeaders(allowed),
      });
      expect([...res.headers.keys()].filter((k) => k.startsWith("access-control-"))).toEqual([]);
    } finally {
      await closed.drain(1000);
    }
  });
});

describe("caller deadlines beyond a Node timer", () => {
  it("are refused, not fired after 1 ms", async () => {
    // connect arms setTimeout with the caller's deadline; Node fires a delay over 2^31-1 ms at once.
    const res = await fetch(`${server.baseUrl}${path}`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "connect-protocol-version": "1",
        "connect-timeout-ms": "3000000000",
      },
      body: JSON.stringify({ productId: "slow" }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { code: string }).code).toBe("invalid_argument");
  });
});

describe.each(["connect-json-http1", "grpc-h2c", "grpc-web-http1"])("limits over %s", (name) => {
  const client = () => createClient(InventoryService, transports(server.baseUrl)[name] ?? fail());
  const codeOf = async (p: Promise<unknown>) =>
    ConnectError.from(
      await p.then(
        () => undefined,
        (e: unknown) => e,
      ),
    ).code;

  it("refuses a request over maxRequestBytes with RESOURCE_EXHAUSTED", async () => {
    expect(await codeOf(client().getProduct({ productId: "x".repeat(70 * 1024) }))).toBe(
      Code.ResourceExhausted,
    );
  });

  it("applies the default deadline when the caller sets none", async () => {
    const started = Date.now();
    expect(await codeOf(client().getProduct({ productId: "stuck" }))).toBe(Code.DeadlineExceeded);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
  });

  it("caps a caller's longer deadline at maxTimeoutMs instead of refusing it", async () => {
    const started = Date.now();
    expect(await codeOf(client().getProduct({ productId: "stuck" }, { timeoutMs: 60_000 }))).toBe(
      Code.DeadlineExceeded,
    );
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("lets a normal call through", async () => {
    expect((await client().getProduct({ productId: "ok" }, { timeoutMs: 60_000 })).product?.id).toBe("ok");
  });
});

function fail(): never {
  throw new Error("no transport");
}
