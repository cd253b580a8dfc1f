import * as http2 from "node:http2";
import * as net from "node:net";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { createOnePort, type OnePort } from "../../src/server/one-port.js";

const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
let server: OnePort | undefined;
afterEach(() => server?.close(500));

async function start(sniffTimeoutMs = 10_000): Promise<number> {
  server = createOnePort({
    handler: (req, res) => {
      res.setHeader("content-type", "text/plain");
      res.end(`hello over ${req.httpVersion}`);
    },
    log: pino({ enabled: false }),
    sniffTimeoutMs,
  });
  return server.listen(0, "127.0.0.1");
}

/** Opens a raw socket, runs `act`, and resolves with everything received until the server closes it. */
function raw(port: number, act: (s: net.Socket) => void): Promise<{ data: string; ms: number }> {
  return new Promise((resolve) => {
    const started = Date.now();
    let data = "";
    const socket = net.connect(port, "127.0.0.1", () => act(socket));
    socket.on("data", (d: Buffer) => (data += d.toString("latin1")));
    socket.on("error", () => {});
    socket.on("close", () => resolve({ data, ms: Date.now() - started }));
  });
}

describe("one plaintext port", () => {
  it("serves HTTP/1.1 and HTTP/2 prior knowledge side by side", async () => {
    const port = await start();
    const h1 = await (await fetch(`http://127.0.0.1:${port}/`)).text();
    const session = http2.connect(`http://127.0.0.1:${port}`);
    const h2 = await new Promise<string>((resolve) => {
      let body = "";
      const req = session.request({ ":path": "/" });
      req.on("data", (d: Buffer) => (body += d.toString()));
      req.on("end", () => resolve(body));
      req.end();
    });
    session.close();
    expect([h1, h2]).toEqual(["hello over 1.1", "hello over 2.0"]);
  });

  it("waits for a preface split across packets", async () => {
    const port = await start();
    const session = http2.connect(`http://127.0.0.1:${port}`, {
      createConnection: () => {
        const s = net.connect(port, "127.0.0.1");
        // Deliver the first 5 bytes alone, then the rest: the sniffer must wait, not guess HTTP/1.1.
        const write = s.write.bind(s);
        let first = true;
        s.write = ((chunk: Buffer, ...rest: never[]) => {
          if (!first) return write(chunk, ...rest);
          first = false;
          write(chunk.subarray(0, 5));
          setTimeout(() => write(chunk.subarray(5), ...rest), 30);
          return true;
        }) as typeof s.write;
        return s;
      },
    });
    const status = await new Promise<number | undefined>((resolve, reject) => {
      const req = session.request({ ":path": "/" });
      req.on("response", (h) => resolve(h[":status"]));
      req.on("error", reject);
      req.end();
      req.resume();
    });
    session.close();
    expect(status).toBe(200);
  });

  it("destroys a connection that stays silent past the sniff timeout", async () => {
    const port = await start(200);
    const { data, ms } = await raw(port, () => {});
    expect(data).toBe("");
    expect(ms).toBeGreaterThanOrEqual(150);
    expect(ms).toBeLessThan(2_000);
  });

  it("destroys a connection that sends half a preface and stops", async () => {
    const port = await start(200);
    const { ms } = await raw(port, (s) => s.write(preface.slice(0, 10)));
    expect(ms).toBeLessThan(2_000);
  });

  it("answers garbage with an HTTP/1.1 error, not a crash", async () => {
    const port = await start();
    const { data } = await raw(port, (s) => s.write("\x16\x03\x01 not http at all\r\n\r\n"));
    expect(data === "" || data.startsWith("HTTP/1.1 400")).toBe(true);
    const again = await (await fetch(`http://127.0.0.1:${port}/`)).text();
    expect(again).toBe("hello over 1.1");
  });
});
