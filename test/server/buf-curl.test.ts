import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "./fixture.js";

const run = promisify(execFile);
const bufBin = fileURLToPath(new URL("../../node_modules/.bin/buf", import.meta.url));
const method = "shop.inventory.v1.InventoryService/GetProduct";

/** Runs node_modules/.bin/buf curl; the schema always comes from server reflection (no --schema). */
async function bufCurl(args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const { stdout, stderr } = await run(bufBin, ["curl", ...args], { timeout: 20_000 });
    return { stdout, stderr, code: 0 };
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; code?: number };
    return { stdout: err.stdout ?? "", stderr: err.stderr ?? "", code: err.code ?? -1 };
  }
}

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server.drain(1000));

describe("buf curl with server reflection", () => {
  it("lists the methods", async () => {
    const out = await bufCurl(["--http2-prior-knowledge", "--list-methods", server.baseUrl]);
    expect(out.stderr).toBe("");
    expect(out.stdout.split("\n")).toContain(method);
    expect(out.stdout).toContain("grpc.health.v1.Health/Check");
  });

  it.each([
    ["connect (default)", []],
    ["grpc", ["--protocol", "grpc"]],
    ["connect", ["--protocol", "connect"]],
    ["grpcweb", ["--protocol", "grpcweb"]],
  ])("calls GetProduct over %s", async (_name, protocol) => {
    const out = await bufCurl([
      "--http2-prior-knowledge",
      ...protocol,
      "-d",
      '{"productId":"ok"}',
      `${server.baseUrl}/${method}`,
    ]);
    expect(out.code).toBe(0);
    const body = JSON.parse(out.stdout) as { product: { id: string; version: string } };
    expect(body.product).toMatchObject({ id: "ok", version: "3" });
  });

  it("shows the mapped error and nothing of its cause", async () => {
    const out = await bufCurl([
      "--http2-prior-knowledge",
      "-d",
      '{"productId":"boom"}',
      `${server.baseUrl}/${method}`,
    ]);
    expect(out.code).not.toBe(0);
    expect(out.stderr).toContain('"code": "internal"');
    expect(out.stderr).toContain('"message": "internal error"');
    expect(out.stderr).not.toMatch(/SELECT|db-1/);
  });
});
