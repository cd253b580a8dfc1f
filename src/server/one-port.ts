/**
 * One plaintext TCP port for HTTP/2 prior knowledge (h2c: gRPC, buf curl, service meshes) and
 * HTTP/1.1 (browsers: Connect, gRPC-Web). Node's `allowHTTP1` works with TLS only, so each new
 * connection's first bytes are compared with the HTTP/2 preface to pick the server that gets it.
 */
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import type { Logger } from "pino";
import type { NodeHandler } from "./cors.js";

const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

/** Options of the one-port server. */
export interface OnePortOptions {
  /** Serves every request, HTTP/1.1 and h2 alike. */
  handler: NodeHandler;
  log: Logger;
  /** A connection that sends too few bytes to pick a protocol in this time is destroyed. */
  sniffTimeoutMs?: number;
}

/** A listening one-port server. */
export interface OnePort {
  /** Binds and resolves with the bound port (`port` 0 picks a free one). */
  listen(port: number, host: string): Promise<number>;
  /**
   * Stops accepting, sends GOAWAY to h2 sessions and closes idle HTTP/1.1 connections (busy ones after
   * their current answer); resolves when every connection has closed. After `graceMs` whatever is
   * still open is destroyed.
   */
  close(graceMs: number): Promise<void>;
}

/** Creates the server; nothing is bound until `listen`. */
export function createOnePort(opts: OnePortOptions): OnePort {
  const log = opts.log;
  let draining = false;
  const h1 = http.createServer((req, res) => {
    // While draining, answer what is in flight but do not keep the connection for another request.
    if (draining) res.shouldKeepAlive = false;
    opts.handler(req, res);
  });
  // Node arms headersTimeout/requestTimeout and closeIdleConnections() from its 'listening' event;
  // this server never listens itself (connections are handed to it), so arm them here.
  h1.emit("listening");
  // Bounded streams per connection (one client cannot open unbounded concurrent calls), and idle
  // sessions are closed after 5 minutes (live order streams send heartbeats well within that).
  const h2 = http2.createServer({ settings: { maxConcurrentStreams: 1000 } }, opts.handler);
  h2.setTimeout(300_000);
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    if (draining) session.close();
  });
  h2.on("sessionError", (err) => log.debug({ err }, "h2 session error"));
  h1.on("clientError", (err, socket) => {
    log.debug({ err }, "http/1.1 client error");
    socket.destroy();
  });
  const sockets = new Set<net.Socket>();
  const tcp = net.createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    sniff(socket, opts.sniffTimeoutMs ?? 10_000, (isH2) => (isH2 ? h2 : h1).emit("connection", socket));
  });
  tcp.on("error", (err) => log.error({ err }, "listener error"));

  return {
    listen: (port, host) => listen(tcp, port, host),
    async close(graceMs) {
      draining = true;
      const closed = new Promise<void>((resolve) => tcp.close(() => resolve()));
      for (const session of sessions) session.close();
      h1.closeIdleConnections();
      // Busy HTTP/1.1 connections close after their answer (shouldKeepAlive), if it has not started yet;
      // a long answer already under way is cut at graceMs below.
      const timer = setTimeout(() => {
        log.warn({ connections: sockets.size }, "drain grace over: destroying open connections");
        for (const session of sessions) session.destroy();
        for (const socket of sockets) socket.destroy();
      }, graceMs);
      const idleSweep = setInterval(() => h1.closeIdleConnections(), 50);
      try {
        await closed;
      } finally {
        clearTimeout(timer);
        clearInterval(idleSweep);
        h1.close();
      }
    },
  };
}

function listen(tcp: net.Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    tcp.once("error", reject);
    tcp.listen(port, host, () => {
      tcp.off("error", reject);
      resolve((tcp.address() as net.AddressInfo).port);
    });
  });
}

/**
 * Reads just enough bytes to tell an HTTP/2 preface from anything else, puts them back, and calls
 * `route`. The socket is left paused: the h2 session reads the put-back bytes itself, and resuming
 * it here would lose them ("Error in the HTTP2 framing layer").
 */
function sniff(socket: net.Socket, timeoutMs: number, route: (isH2: boolean) => void): void {
  let seen = Buffer.alloc(0);
  const fail = () => socket.destroy();
  socket.setTimeout(timeoutMs, fail);
  socket.once("error", fail);
  socket.once("end", fail);
  const onReadable = () => {
    for (let chunk = socket.read() as Buffer | null; chunk !== null; chunk = socket.read() as Buffer | null) {
      seen = Buffer.concat([seen, chunk]);
    }
    const n = Math.min(seen.length, preface.length);
    const matches = seen.subarray(0, n).equals(preface.subarray(0, n));
    if (matches && seen.length < preface.length) return; // could still be h2: wait for more
    socket.off("readable", onReadable);
    socket.off("error", fail);
    socket.off("end", fail);
    socket.setTimeout(0);
    socket.unshift(seen);
    route(matches);
    // HTTP/1.1 reads through 'data' events; our 'readable' listener left the socket paused.
    if (!matches) socket.resume();
  };
  socket.on("readable", onReadable);
}
