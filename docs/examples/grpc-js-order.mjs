// An internal service's view: order a product with a stock @grpc/grpc-js client and watch the order.
//   SHOP_TOKEN=<jwt> node docs/examples/grpc-js-order.mjs <product id> [address]   (default 127.0.0.1:8080)
// Loads the service from proto/ with @grpc/proto-loader; run it from the repository root.
// SHOP_TOKEN is a bearer JWT with the `service` scope (docs/auth.md): it orders for a user of its choice.
import { randomUUID } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const [productId, address = "127.0.0.1:8080"] = process.argv.slice(2);
const token = process.env.SHOP_TOKEN;
if (!productId || !token) {
  console.error("usage: SHOP_TOKEN=<jwt> node docs/examples/grpc-js-order.mjs <product id> [address]");
  process.exit(2);
}

const definition = protoLoader.loadSync("shop/order/v1/order.proto", {
  includeDirs: ["proto"],
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const { OrderService } = grpc.loadPackageDefinition(definition).shop.order.v1;
const orders = new OrderService(address, grpc.credentials.createInsecure());
// Every call carries the token as metadata (plaintext h2c: call credentials need TLS, metadata does not).
const metadata = () => {
  const m = new grpc.Metadata();
  m.set("authorization", `Bearer ${token}`);
  return m;
};

const userId = `grpc-js-${randomUUID().slice(0, 8)}`;
const deadline = () => new Date(Date.now() + 10_000);
const order = await new Promise((resolve, reject) =>
  orders.createOrder(
    {
      userId,
      items: { items: [{ productId, quantity: 1 }] },
      customerEmail: "buyer@example.com",
      idempotencyKey: randomUUID(), // keep it for retries: a retry with it never orders twice
    },
    metadata(),
    { deadline: deadline() },
    (err, res) => (err ? reject(err) : resolve(res.order)),
  ),
);
console.log(`order ${order.id} ${order.orderNumber} ${order.status} total ${order.total.amountMinor} ${order.total.currencyCode}`);

// History first (the "created" event), then live changes; heartbeats keep the stream open.
const stream = orders.watchOrder({ userId, orderId: order.id, afterVersion: 0 }, metadata());
stream.on("data", (msg) => {
  if (msg.event) console.log(`event v${msg.event.version} ${msg.event.kind} -> ${msg.event.toStatus}`);
  else if (msg.heartbeat) {
    console.log("live");
    stream.cancel(); // a real watcher keeps going; this example stops once it is live
  }
});
stream.on("error", (err) => {
  if (err.code !== grpc.status.CANCELLED) {
    console.error(`watch failed: ${err.code} ${err.details}`);
    process.exitCode = 1;
  }
  orders.close();
});
