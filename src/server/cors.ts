/**
 * CORS for browser callers (Connect-Web, gRPC-Web) from an explicit origin allow-list. Origins not
 * listed get no CORS headers at all, so the browser refuses the answer; no wildcard is supported.
 */
import type * as http from "node:http";
import type * as http2 from "node:http2";
import { cors } from "@connectrpc/connect";
import { requestIdHeader } from "./context.js";

type Request = http.IncomingMessage | http2.Http2ServerRequest;
type Response = http.ServerResponse | http2.Http2ServerResponse;

/** A request listener for both the HTTP/1.1 and the h2 server. */
export type NodeHandler = (req: Request, res: Response) => void;

/** How long a browser may cache a preflight answer (seconds). */
const preflightMaxAgeSeconds = 7200;

/** Wraps `next` with CORS for `origins`; with no origins it returns `next` unchanged. */
export function withCors(origins: readonly string[], next: NodeHandler): NodeHandler {
  if (origins.length === 0) return next;
  const allowed = new Set(origins);
  // Authorization: browsers send the bearer token (docs/auth.md); the preflight must allow it.
  const allowHeaders = [...cors.allowedHeaders, requestIdHeader, "Authorization"].join(", ");
  const exposeHeaders = [...cors.exposedHeaders, requestIdHeader].join(", ");
  const allowMethods = cors.allowedMethods.join(", ");
  return (req, res) => {
    const origin = req.headers.origin;
    // Answers depend on Origin: caches must not serve one origin's answer to another.
    res.setHeader("Vary", "Origin");
    if (origin === undefined || !allowed.has(origin)) return next(req, res);
    res.setHeader("Access-Control-Allow-Origin", origin);
    if (req.method === "OPTIONS" && req.headers["access-control-request-method"] !== undefined) {
      res.setHeader("Access-Control-Allow-Methods", allowMethods);
      res.setHeader("Access-Control-Allow-Headers", allowHeaders);
      res.setHeader("Access-Control-Max-Age", String(preflightMaxAgeSeconds));
      res.statusCode = 204;
      res.end();
      return;
    }
    res.setHeader("Access-Control-Expose-Headers", exposeHeaders);
    next(req, res);
  };
}
