/**
 * The bench's gRPC client pieces: node:http2 over h2c and protobuf-es, no gRPC library, so the
 * client's own cost per call stays small and every timestamp is taken where the bytes arrive. The
 * load generator (grpc-load.ts), scenario 5's ListOrders calls and scenario 6's streams use them.
 */
import { type ClientHttp2Session, type ClientHttp2Stream, connect, constants } from "node:http2";
import { type DescMessage, fromBinary, type MessageShape } from "@bufbuild/protobuf";

/** One h2c connection to 127.0.0.1:port. */
export async function openSession(port: number): Promise<ClientHttp2Session> {
  const session = connect(`http://127.0.0.1:${port}`);
  session.on("error", () => undefined); // each stream reports its own failure
  await new Promise<void>((resolve, reject) => {
    session.once("connect", () => resolve());
    session.once("error", reject);
  });
  return session;
}

/** A gRPC length-prefixed message (uncompressed). */
export function frame(msg: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + msg.length);
  out.writeUInt8(0, 0);
  out.writeUInt32BE(msg.length, 1);
  out.set(msg, 5);
  return out;
}

/** Splits a byte stream into gRPC messages; `onMessage` gets each complete one. */
export function messageReader(onMessage: (msg: Uint8Array) => void): (chunk: Buffer) => void {
  let pending: Buffer = Buffer.alloc(0);
  return (chunk) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    while (pending.length >= 5) {
      const size = pending.readUInt32BE(1);
      if (pending.length < 5 + size) break;
      onMessage(pending.subarray(5, 5 + size));
      pending = pending.subarray(5 + size);
    }
  };
}

/** How a call ended: grpc-status "0" is OK; `error` names anything else. */
export interface CallEnd {
  status: string | undefined;
  error: string | null;
}

/**
 * Starts one call: sends `body` (one framed request) and reports messages as they arrive with the
 * time they arrived (performance.now()), then how it ended. The caller may cancel the stream.
 */
export function startCall(
  session: ClientHttp2Session,
  path: string,
  bearer: string | null,
  body: Buffer,
  onMessage: (msg: Uint8Array, at: number) => void,
  onEnd: (end: CallEnd) => void,
): ClientHttp2Stream {
  const stream = session.request({
    ":method": "POST",
    ":path": path,
    "content-type": "application/grpc+proto",
    te: "trailers",
    ...(bearer !== null && { authorization: `Bearer ${bearer}` }),
  });
  let status: string | undefined;
  let error: string | null = null;
  const statusOf = (h: Record<string, unknown>) => {
    const s = h["grpc-status"] as string | undefined;
    if (s === undefined) return;
    status = s;
    if (s !== "0") error ??= `${s}: ${decodeURIComponent(String(h["grpc-message"] ?? ""))}`;
  };
  stream.on("response", statusOf); // a trailers-only answer carries its status here
  stream.on("trailers", statusOf);
  const read = messageReader((msg) => onMessage(msg, performance.now()));
  stream.on("data", read);
  stream.on("error", (e: Error) => {
    error ??= e.message;
  });
  stream.on("close", () => onEnd({ status, error: status === "0" ? null : (error ?? "no grpc-status") }));
  stream.end(body);
  return stream;
}

/** Cancels a call (RST_STREAM CANCEL), as a client that goes away does. */
export function cancel(stream: ClientHttp2Stream): void {
  if (!stream.closed) stream.close(constants.NGHTTP2_CANCEL);
}

/** One unary call: the decoded answer, or the error; `sentAt`/`answeredAt` are performance.now() times. */
export function unary<O extends DescMessage>(
  session: ClientHttp2Session,
  path: string,
  bearer: string,
  body: Buffer,
  schema: O,
): Promise<{ res: MessageShape<O> | null; error: string | null; sentAt: number; answeredAt: number }> {
  return new Promise((resolve) => {
    let res: MessageShape<O> | null = null;
    let answeredAt = 0;
    const sentAt = performance.now();
    startCall(
      session,
      path,
      bearer,
      body,
      (msg, at) => {
        res = fromBinary(schema, msg);
        answeredAt = at;
      },
      (end) => resolve({ res, error: end.error, sentAt, answeredAt: answeredAt || performance.now() }),
    );
  });
}
