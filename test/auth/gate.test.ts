/**
 * Issue 6: where the check runs. A call without a valid token is refused before its body is read
 * (connect's requestGate), on gRPC and Connect alike; health and reflection need no token; buf curl
 * works with an Authorization header; dev mode signs its own tokens; a process with no way to verify
 * tokens refuses to start.
 */
import { execFile, spawn } from "node:child_process";
import { once } from "node:events";
import * as http from "node:http";
import * as http2 from "node:http2";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import type { App } from "../../src/app.js";
import { startTestApp } from "../harness/app.js";
import { bearer, defaultTestToken, testAuthConfig, testPublicPem } from "../harness/auth.js";
import { transports } from "../harness/clients.js";
import { expectError } from "../harness/errors.js";

let app: App & { port: number };
beforeAll(async () => {
  app = await startTestApp({ maxRequestBytes: 64 * 1024 });
});
afterAll(async () => {
  await app?.shutdown();
});

describe("before the body is read", () => {
  it("gRPC: a call with headers only and no token is answered UNAUTHENTICATED without any body", async () => {
    const session = http2.connect(`http://127.0.0.1:${app.port}`);
    try {
      const stream = session.request({
        ":method": "POST",
        ":path": "/shop.order.v1.OrderService/GetOrder",
        "content-type": "application/grpc",
        te: "trailers",
      });
      // No DATA frame and no end of stream: a server that waited for the body would never answer.
      const [headers] = (await once(stream, "response")) as [http2.IncomingHttpHeaders];
      const [trailers] = (await once(stream, "trailers")) as [http2.IncomingHttpHeaders];
      const status = trailers["grpc-status"] ?? headers["grpc-status"];
      expect(status).toBe(String(Code.Unauthenticated));
      expect(trailers["grpc-message"] ?? headers["grpc-message"]).toBe("missing%20bearer%20token");
      expect(headers["www-authenticate"]).toBe("Bearer");
      stream.close();
    } finally {
      session.close();
    }
  });

  it("Connect: a body announced far over the size limit gets UNAUTHENTICATED, not RESOURCE_EXHAUSTED", async () => {
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = http.request({
        host: "127.0.0.1",
        port: app.port,
        method: "POST",
        path: "/shop.inventory.v1.InventoryService/CreateProduct",
        headers: { "content-type": "application/json", "content-length": String(50 * 1024 * 1024) },
      });
      req.on("response", resolve);
      req.on("error", reject);
      req.flushHeaders(); // headers only: not one byte of the 50 MiB is sent
    });
    let body = "";
    res.on("data", (chunk: Buffer) => {
      body += chunk.toString();
    });
    await once(res, "end");
    expect(res.statusCode).toBe(401);
    expect(JSON.parse(body)).toMatchObject({ code: "unauthenticated", message: "missing bearer token" });
  });

  it("with a valid token the same oversized request reaches the size check", async () => {
    const tr = transports(app.port, [bearer()])["connect-json-http1"];
    if (!tr) throw new Error("transport");
    const inv = createClient(InventoryService, tr);
    await expectError(
      inv.createProduct({ sellerId: "s", sku: "x", name: "y".repeat(70_000), idempotencyKey: "k" }),
      Code.ResourceExhausted,
    );
  });
});

describe("public services", () => {
  it("health answers without a token", async () => {
    const health = createClient(Health, createGrpcTransport({ baseUrl: `http://127.0.0.1:${app.port}` }));
    expect((await health.check({ service: "" })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
  });

  const bufBin = fileURLToPath(new URL("../../node_modules/.bin/buf", import.meta.url));
  const bufCurl = async (args: string[]) => {
    try {
      const { stdout, stderr } = await promisify(execFile)(
        bufBin,
        ["curl", "--http2-prior-knowledge", ...args],
        {
          timeout: 20_000,
        },
      );
      return { stdout, stderr, code: 0 };
    } catch (e) {
      const err = e as { stdout?: string; stderr?: string; code?: number };
      return { stdout: err.stdout ?? "", stderr: err.stderr ?? "", code: err.code ?? -1 };
    }
  };

  it("reflection answers without a token (buf curl --list-methods); calls need -H Authorization", async () => {
    const base = `http://127.0.0.1:${app.port}`;
    const list = await bufCurl(["--list-methods", base]);
    expect(list.stdout.split("\n")).toContain("shop.order.v1.OrderService/WatchOrders");
    const url = `${base}/shop.inventory.v1.InventoryService/ListProducts`;
    const without = await bufCurl(["--protocol", "grpc", "-d", "{}", url]);
    expect(without.code).not.toBe(0);
    expect(without.stderr).toContain('"code": "unauthenticated"');
    const withToken = await bufCurl([
      "--protocol",
      "grpc",
      "-H",
      `Authorization: Bearer ${defaultTestToken()}`,
      "-d",
      "{}",
      url,
    ]);
    expect(withToken.stderr).toBe("");
    expect(withToken.code).toBe(0);
  });
});

describe("dev mode (AUTH_DEV=true)", () => {
  it("accepts only the tokens it printed: the operator's for everything, the buyer's for its own", async () => {
    const dev = await startTestApp({
      authDev: true,
      authPublicKeys: null,
      authIssuer: null,
      authAudience: null,
    });
    try {
      const tokens = dev.devTokens;
      if (!tokens) throw new Error("dev mode printed no tokens");
      const inv = (t: string) =>
        createClient(
          InventoryService,
          createGrpcTransport({ baseUrl: `http://127.0.0.1:${dev.port}`, interceptors: [bearer(() => t)] }),
        );
      expect((await inv(tokens.operator).checkStockInvariant({})).violations).toEqual([]);
      await expectError(inv(tokens.buyer).checkStockInvariant({}), Code.PermissionDenied);
      await inv(tokens.buyer).listProducts({});
      // The test key's tokens mean nothing to a dev-mode process.
      await expectError(inv(defaultTestToken()).listProducts({}), Code.Unauthenticated);
    } finally {
      await dev.shutdown();
    }
  });

  it("is off unless asked: createApp refuses to serve without keys", async () => {
    await expect(
      startTestApp({ authPublicKeys: null, authIssuer: null, authAudience: null }),
    ).rejects.toThrow(/AUTH_JWKS_URL or AUTH_PUBLIC_KEYS/);
  });

  it("the process without auth settings exits 1 naming them, without a stack trace", async () => {
    const env: Record<string, string | undefined> = { ...process.env, PORT: "0", HOST: "127.0.0.1" };
    for (const k of Object.keys(env)) if (k.startsWith("AUTH_")) delete env[k];
    const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const [code] = await once(child, "exit");
    expect(code).toBe(1);
    expect(stderr).toContain("AUTH_JWKS_URL or AUTH_PUBLIC_KEYS");
    expect(stderr).toContain("AUTH_DEV=true");
    expect(stderr).not.toMatch(/\n\s+at /);
  });
});

describe("where the keys come from", () => {
  it("a JWKS URL (fetched by the server) and a PEM public key both verify the test tokens", async () => {
    const jwks = testAuthConfig.authPublicKeys ?? "";
    const server = http.createServer((_req, res) => {
      res.setHeader("content-type", "application/json");
      res.end(jwks);
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const { port } = server.address() as { port: number };
    const fromUrl = await startTestApp({
      authPublicKeys: null,
      authJwksUrl: `http://127.0.0.1:${port}/jwks.json`,
    });
    const fromPem = await startTestApp({ authPublicKeys: testPublicPem.replaceAll("\n", "\\n") });
    try {
      for (const a of [fromUrl, fromPem]) {
        const inv = createClient(
          InventoryService,
          createGrpcTransport({ baseUrl: `http://127.0.0.1:${a.port}`, interceptors: [bearer()] }),
        );
        expect((await inv.checkStockInvariant({})).violations).toEqual([]);
      }
    } finally {
      await Promise.all([fromUrl.shutdown(), fromPem.shutdown()]);
      server.close();
    }
  });
});
