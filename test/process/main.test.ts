import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterEach, describe, expect, inject, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import { connectPg } from "../../src/embedded/pg-client.js";
import { bucketOfUser, contiguousBucketMap } from "../../src/shard/router.js";
import { unique } from "../harness/app.js";
import { bearer, testAuthEnv } from "../harness/auth.js";

/** Runs `npm start`'s entry point as a real child process, the way an operator does. */
function startMain(env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
    env: { ...process.env, LOG_LEVEL: "info", GRPC_PORT: "0", ...testAuthEnv, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
}

/** Resolves with the port from the "serving" log line. */
async function servingPort(child: ChildProcess): Promise<number> {
  let buffered = "";
  for await (const chunk of child.stdout as NodeJS.ReadableStream) {
    buffered += chunk.toString();
    const line = buffered.split("\n").find((l) => l.includes('"msg":"serving"'));
    if (line) return JSON.parse(line).port as number;
  }
  throw new Error(`the process ended before serving:\n${buffered}`);
}

async function waitFor(check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("condition not reached");
}

let child: ChildProcess | undefined;
afterEach(() => {
  if (child && child.exitCode === null) child.kill("SIGKILL");
});

describe("the service process", () => {
  it("serves, then drains on SIGTERM: the in-flight call completes and the process exits 0", async () => {
    child = startMain({
      PORT: "0",
      HOST: "127.0.0.1",
      SHARD_URLS: inject("shardUrls").join(","),
      REDIS_URLS: inject("redisUrls").join(","),
    });
    const port = await servingPort(child);
    const transport = createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}`, interceptors: [bearer()] });
    const health = createClient(Health, transport);
    expect((await health.check({ service: "" })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    expect((await health.check({ service: "shop.inventory.v1.InventoryService" })).status).toBe(
      HealthCheckResponse_ServingStatus.SERVING,
    );

    // Make a call that is provably in flight: hold the stock row's lock from outside, so the
    // AdjustStock blocks in Postgres; SIGTERM arrives while it waits; then let it finish.
    const inventory = createClient(InventoryService, transport);
    const seller = unique("drain");
    const { product } = await inventory.createProduct({
      sellerId: seller,
      sku: "D-1",
      name: "Drain test",
      price: { amountMinor: 1n, currencyCode: "EUR" },
      initialStock: [{ warehouseId: "main", quantity: 1n }],
      idempotencyKey: unique("k"),
    });
    const shardUrl = inject("shardUrls")[
      contiguousBucketMap(inject("shardUrls").length).shardOf(bucketOfUser(seller))
    ] as string;
    const blocker = await connectPg(shardUrl);
    await blocker.query("begin");
    await blocker.query("select 1 from stock where product_id = $1 for update", [product?.id]);
    const inFlight = inventory.adjustStock({
      productId: product?.id ?? "",
      warehouseId: "main",
      delta: 2n,
      reason: "drain",
      idempotencyKey: unique("k"),
    });
    await waitFor(
      async () =>
        (
          await blocker.query(
            "select 1 from pg_stat_activity where pg_backend_pid() = any(pg_blocking_pids(pid))",
          )
        ).rows.length > 0,
    );
    const exited = once(child, "exit");
    child.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 300));
    expect(child.exitCode).toBeNull(); // still draining: it waits for the call
    await blocker.query("commit");
    await blocker.end();
    const answer = await inFlight;
    expect(answer.stock?.available).toBe(3n);
    const [code] = await exited;
    expect(code).toBe(0);
  });

  it("refuses a bad setting at start with a message naming it", async () => {
    child = startMain({ PORT: "not-a-port" });
    let stderr = "";
    child.stderr?.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const [code] = await once(child, "exit");
    expect(code).toBe(1);
    expect(stderr).toContain("PORT");
    expect(stderr).not.toMatch(/\n\s+at /); // no stack trace
  });
});
