// Container health check: a gRPC grpc.health.v1.Health/Check over h2c against this process's own port.
// Exits 0 only when the server answers SERVING (it reports NOT_SERVING while starting and draining).
// Usage: node scripts/healthcheck.mjs [service]   (PORT from the environment, default 8080)
import { connect } from "node:http2";

const port = Number(process.env.PORT || 8080);
const service = process.argv[2] ?? "";
const SERVING = 1;

/** HealthCheckRequest { string service = 1; } as a length-prefixed gRPC message. */
function request(name) {
  const bytes = Buffer.from(name, "utf8");
  if (bytes.length > 127) throw new Error("service name too long for this probe");
  const body =
    bytes.length === 0 ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a, bytes.length]), bytes]);
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(body.length, 1);
  return Buffer.concat([prefix, body]);
}

/** HealthCheckResponse { ServingStatus status = 1; }: field 1 as a one-byte varint; 0 (UNKNOWN) when absent. */
function status(frame) {
  const body = frame.subarray(5);
  return body[0] === 0x08 ? (body[1] ?? 0) : 0;
}

function fail(why) {
  console.error(`unhealthy: ${why}`);
  process.exit(1);
}

const timer = setTimeout(() => fail("no answer within 3 s"), 3000);
const session = connect(`http://127.0.0.1:${port}`);
session.on("error", (e) => fail(e.message));
const stream = session.request({
  ":method": "POST",
  ":path": "/grpc.health.v1.Health/Check",
  "content-type": "application/grpc",
  te: "trailers",
});
const chunks = [];
let grpcStatus;
stream.on("response", (headers) => {
  if (headers["grpc-status"] !== undefined) grpcStatus = String(headers["grpc-status"]);
});
stream.on("trailers", (trailers) => {
  grpcStatus = String(trailers["grpc-status"]);
});
stream.on("data", (chunk) => chunks.push(chunk));
stream.on("error", (e) => fail(e.message));
stream.on("end", () => {
  clearTimeout(timer);
  session.close();
  if (grpcStatus !== "0") fail(`grpc-status ${grpcStatus}`);
  const s = status(Buffer.concat(chunks));
  if (s !== SERVING) fail(`status ${s}`);
  process.exit(0);
});
stream.end(request(service));
