/**
 * pino options shared by the process logger and the tests: JSON lines, one base field, and a redact
 * list as the last line of defence against secrets and personal data. The code never logs request
 * bodies or headers; what the list catches is what a wrapped error or a careless field could carry
 * (a Postgres unique-violation `detail` quotes the key's values, e.g. an email).
 */
import type { LoggerOptions } from "pino";

/** Paths pino censors wherever a line carries them (top level, one level down, and in errors). */
export const redactPaths = [
  "authorization",
  "cookie",
  "customerEmail",
  "customer_email",
  "headers.authorization",
  "headers.cookie",
  'headers["set-cookie"]',
  "*.authorization",
  "*.cookie",
  "*.customerEmail",
  "*.customer_email",
  // pg errors (also copied onto MikroORM's DriverException): values of the row or key involved.
  "err.detail",
  "err.where",
  "err.parameters",
  "err.params",
  "err.cause.detail",
  "err.cause.where",
];

/** Options of the process logger at `level`. */
export function loggerOptions(level: string): LoggerOptions {
  return {
    level,
    base: { service: "shop-mesh" },
    redact: { paths: redactPaths, censor: "[redacted]" },
  };
}
