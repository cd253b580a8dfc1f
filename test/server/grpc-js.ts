/** Stock @grpc/grpc-js clients built from proto/ with @grpc/proto-loader: what an internal caller uses. */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const definition = protoLoader.loadSync(["shop/inventory/v1/inventory.proto"], {
  includeDirs: ["proto"],
  longs: String,
  defaults: true,
});
const loaded = grpc.loadPackageDefinition(definition) as unknown as {
  shop: { inventory: { v1: { InventoryService: grpc.ServiceClientConstructor } } };
};

/** A unary call's outcome: the answer or the gRPC error. */
export type Outcome = { ok: true; value: Record<string, unknown> } | { ok: false; error: grpc.ServiceError };

/** Calls GetProduct over grpc-js (h2c, plaintext) and closes the client. */
export async function grpcJsGetProduct(port: number, productId: string): Promise<Outcome> {
  const client = new loaded.shop.inventory.v1.InventoryService(
    `127.0.0.1:${port}`,
    grpc.credentials.createInsecure(),
  );
  const getProduct = client.GetProduct?.bind(client);
  if (getProduct === undefined) throw new Error("GetProduct is missing from the loaded definition");
  try {
    return await new Promise<Outcome>((resolve) => {
      getProduct({ productId }, (error: grpc.ServiceError | null, value: Record<string, unknown>) =>
        resolve(error ? { ok: false, error } : { ok: true, value }),
      );
    });
  } finally {
    client.close();
  }
}
