import { create, fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { GrpcReflection } from "grpc-js-reflection-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ServerReflection,
  ServerReflectionRequestSchema,
  type ServerReflectionResponse,
} from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { startTestServer, type TestServer, transports } from "./fixture.js";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server.drain(1000));

describe.each(["v1", "v1alpha"])("grpc-js-reflection-client %s", (version) => {
  const reflection = () =>
    new GrpcReflection(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure(), {}, version);

  it("lists the shop, health and reflection services", async () => {
    const services = await reflection().listServices();
    expect(services).toEqual(
      expect.arrayContaining([
        "shop.inventory.v1.InventoryService",
        "shop.order.v1.OrderService",
        "grpc.health.v1.Health",
        `grpc.reflection.${version}.ServerReflection`,
      ]),
    );
  });

  it("describes a method symbol, with its dependencies", async () => {
    const descriptor = await reflection().getDescriptorBySymbol(
      "shop.inventory.v1.InventoryService.GetProduct",
    );
    const root = descriptor.getProtobufJsRoot();
    expect(root.lookupService("shop.inventory.v1.InventoryService").methods.GetProduct?.requestType).toBe(
      ".shop.inventory.v1.GetProductRequest",
    );
    // Product.price is a shop.common.v1.Money from another file: it came along as a dependency.
    expect(root.lookupType("shop.common.v1.Money").fields.amountMinor).toBeDefined();
    expect(root.lookupType("google.protobuf.Timestamp")).toBeDefined();
  });

  it("lists the methods of a service", async () => {
    const methods = await reflection().listMethods("shop.inventory.v1.InventoryService");
    expect(methods.map((m) => m.name)).toContain("GetProduct");
  });
});

describe("reflection protocol details (v1, over Connect's gRPC transport)", () => {
  type Ask = MessageInitShape<typeof ServerReflectionRequestSchema>;
  async function ask(requests: Ask[]): Promise<ServerReflectionResponse[]> {
    const client = createClient(ServerReflection, transports(server.baseUrl)["grpc-h2c"] ?? fail());
    async function* input() {
      for (const r of requests) yield create(ServerReflectionRequestSchema, r);
    }
    const out: ServerReflectionResponse[] = [];
    for await (const res of client.serverReflectionInfo(input())) out.push(res);
    return out;
  }
  const names = (res: ServerReflectionResponse | undefined) =>
    res?.messageResponse.case === "fileDescriptorResponse"
      ? res.messageResponse.value.fileDescriptorProto.map(
          (b) => fromBinary(FileDescriptorProtoSchema, b).name,
        )
      : [];
  const errorCode = (res: ServerReflectionResponse | undefined) =>
    res?.messageResponse.case === "errorResponse" ? res.messageResponse.value.errorCode : undefined;

  it("sends a file's dependencies once per stream, the asked file always", async () => {
    const [first, second] = await ask([
      { messageRequest: { case: "fileByFilename", value: "shop/inventory/v1/inventory.proto" } },
      { messageRequest: { case: "fileByFilename", value: "shop/order/v1/order.proto" } },
    ]);
    expect(names(first)).toEqual([
      "shop/inventory/v1/inventory.proto",
      "google/protobuf/timestamp.proto",
      "shop/common/v1/money.proto",
    ]);
    expect(names(second)).toEqual(["shop/order/v1/order.proto"]);
  });

  it("resolves fields and enum values, and says NOT_FOUND for unknown names", async () => {
    const res = await ask([
      { messageRequest: { case: "fileContainingSymbol", value: "shop.inventory.v1.Product.sku" } },
      {
        messageRequest: { case: "fileContainingSymbol", value: "grpc.health.v1.HealthCheckResponse.SERVING" },
      },
      { messageRequest: { case: "fileContainingSymbol", value: "shop.inventory.v1.Product.nope" } },
      { messageRequest: { case: "fileByFilename", value: "shop/inventory/v1/inventory" } },
      {
        messageRequest: {
          case: "fileContainingExtension",
          value: { containingType: "shop.inventory.v1.Product", extensionNumber: 100 },
        },
      },
      { messageRequest: { case: "allExtensionNumbersOfType", value: "shop.inventory.v1.Product" } },
      { messageRequest: { case: "allExtensionNumbersOfType", value: "no.Such" } },
      { messageRequest: { case: "listServices", value: "" } },
    ]);
    expect(names(res[0])[0]).toBe("shop/inventory/v1/inventory.proto");
    expect(names(res[1])[0]).toBe("grpc/health/v1/health.proto");
    expect(res.slice(2, 5).map(errorCode)).toEqual([5, 5, 5]);
    expect(res[5]?.messageResponse).toMatchObject({
      case: "allExtensionNumbersResponse",
      value: { baseTypeName: "shop.inventory.v1.Product", extensionNumber: [] },
    });
    expect(errorCode(res[6])).toBe(5);
    expect(res[7]?.messageResponse.case).toBe("listServicesResponse");
  });
});

function fail(): never {
  throw new Error("no transport");
}
