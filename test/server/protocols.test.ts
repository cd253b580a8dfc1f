import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorReasonSchema } from "../../gen/shop/common/v1/errors_pb.js";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import { okProduct, startTestServer, type TestServer, transports } from "./fixture.js";
import { grpcJsGetProduct } from "./grpc-js.js";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server.drain(1000));

describe.each(Object.keys(transports("http://x")))("GetProduct over %s on the one port", (name) => {
  const client = () => createClient(InventoryService, transports(server.baseUrl)[name] ?? fail(name));

  it("answers the product", async () => {
    const res = await client().getProduct({ productId: "ok" });
    expect(res.product?.id).toBe("ok");
    expect(res.product?.name).toBe(okProduct.name);
    expect(res.product?.version).toBe(3n);
  });

  it("maps not_found to NotFound with an ErrorReason detail", async () => {
    const err = await client()
      .getProduct({ productId: "missing" })
      .catch((e: unknown) => ConnectError.from(e));
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.NotFound);
    expect((err as ConnectError).rawMessage).toBe("product missing not found");
    const [reason] = (err as ConnectError).findDetails(ErrorReasonSchema);
    expect(reason).toMatchObject({ reason: "not_found", field: "product_id" });
  });

  it("hides an unexpected error behind 'internal error'", async () => {
    const err = ConnectError.from(
      await client()
        .getProduct({ productId: "boom" })
        .catch((e: unknown) => e),
    );
    expect(err.code).toBe(Code.Internal);
    expect(err.rawMessage).toBe("internal error");
    const seen = JSON.stringify([err.message, [...err.metadata], err.details, String(err.cause ?? "")]);
    expect(seen).not.toMatch(/SELECT|db-1|secret|\.ts:/);
  });

  it("echoes a caller's request id", async () => {
    let header: string | null = null;
    await client().getProduct(
      { productId: "ok" },
      { headers: { "x-request-id": `rid-${name}` }, onHeader: (h) => (header = h.get("x-request-id")) },
    );
    expect(header).toBe(`rid-${name}`);
  });
});

describe("a stock grpc-js client on the same port", () => {
  it("gets the product", async () => {
    const out = await grpcJsGetProduct(server.port, "ok");
    expect(out.ok && out.value.product).toMatchObject({ id: "ok", name: okProduct.name, version: "3" });
  });

  it("sees NOT_FOUND and an opaque INTERNAL", async () => {
    const missing = await grpcJsGetProduct(server.port, "missing");
    expect(!missing.ok && missing.error.code).toBe(Code.NotFound);
    const boom = await grpcJsGetProduct(server.port, "boom");
    if (boom.ok) throw new Error("boom answered");
    expect(boom.error.code).toBe(Code.Internal);
    expect(boom.error.details).toBe("internal error");
    const metadata = JSON.stringify(boom.error.metadata.toJSON(), (_k, v) =>
      v instanceof Uint8Array || (v && v.type === "Buffer") ? Buffer.from(v).toString("latin1") : v,
    );
    expect(`${boom.error.message} ${metadata}`).not.toMatch(/SELECT|db-1|secret/);
  });
});

describe("logs", () => {
  it("keep the hidden cause, with its stack, at error level", async () => {
    await grpcJsGetProduct(server.port, "boom");
    const line = server.logs.find((l) => l.msg === "unexpected error");
    const err = line?.err as { message?: string; stack?: string } | undefined;
    expect(line?.level).toBe(50);
    expect(err?.message).toBe("SELECT secret FROM host db-1");
    expect(err?.stack).toContain("fixture.ts");
    expect(line?.requestId).toEqual(expect.any(String));
    expect(line?.rpc).toBe("shop.inventory.v1.InventoryService/GetProduct");
  });

  it("write one line per call with its code", async () => {
    const client = createClient(InventoryService, transports(server.baseUrl)["grpc-h2c"] ?? fail("grpc"));
    await client.getProduct({ productId: "ok" });
    await client.getProduct({ productId: "missing" }).catch(() => {});
    await client.getProduct({ productId: "boom" }).catch(() => {});
    const done = server.logs.filter((l) => l.msg === "call ok" || l.msg === "call failed");
    expect(done.some((l) => l.code === "ok" && l.level === 20)).toBe(true);
    expect(done.some((l) => l.code === "NotFound" && l.level === 40)).toBe(true);
    expect(done.some((l) => l.code === "Internal" && l.level === 50)).toBe(true);
  });
});

function fail(name: string): never {
  throw new Error(`no transport ${name}`);
}
