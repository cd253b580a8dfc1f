import * as http2 from "node:http2";
import { Writable } from "node:stream";
import { type Logger, pino } from "pino";
import type { App, AppConfig } from "../../src/app.js";
import { loggerOptions } from "../../src/observability/logging.js";
import type { SpanExporter } from "../../src/observability/tracing.js";
import { startTestApp } from "../harness/app.js";

export type TestApp = App & { port: number };

/** The shared harness's app, plus the app's logger and a span exporter. */
export function startObservedApp(
  opts: { overrides?: Partial<AppConfig>; logger?: Logger; spanExporter?: SpanExporter } = {},
): Promise<TestApp> {
  return startTestApp(opts.overrides, {
    ...(opts.logger && { logger: opts.logger }),
    ...(opts.spanExporter && { spanExporter: opts.spanExporter }),
  });
}

/** A logger with the process's options (redaction included) whose JSON lines are kept in memory. */
export function capturedLogger(level = "debug") {
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split("\n")) {
        if (line === "") continue;
        raw.push(line);
        lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  return { logger: pino(loggerOptions(level), sink), lines, raw };
}

/** GET /metrics over HTTP/1.1 (fetch). */
export async function scrapeHttp1(port: number): Promise<{ contentType: string; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  return { contentType: res.headers.get("content-type") ?? "", body: await res.text() };
}

/** GET /metrics over HTTP/2 with prior knowledge (h2c). */
export function scrapeH2c(port: number): Promise<{ contentType: string; body: string }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", reject);
    const req = session.request({ ":method": "GET", ":path": "/metrics" });
    let headers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    req.on("response", (h) => {
      headers = h;
    });
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("error", reject);
    req.on("end", () => {
      session.close();
      if (Number(headers[":status"]) !== 200)
        reject(new Error(`/metrics answered ${String(headers[":status"])}`));
      else
        resolve({
          contentType: String(headers["content-type"] ?? ""),
          body: Buffer.concat(chunks).toString(),
        });
    });
    req.end();
  });
}

/**
 * The value of one sample in Prometheus text: `name` with at least `labels`; 0 when absent (a series
 * that has not been touched yet).
 */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  const matches = samples(text, name).filter((s) =>
    Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  if (matches.length > 1)
    throw new Error(`${matches.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return matches[0]?.value ?? 0;
}

/** Every sample of `name` with its labels. */
export function samples(text: string, name: string): { labels: Record<string, string>; value: number }[] {
  const out: { labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g))
      labels[l[1] as string] = l[2] as string;
    out.push({ labels, value: Number(m[3]) });
  }
  return out;
}
