/**
 * Configuration: read from the environment once at start, validated, returned frozen. A bad value
 * throws a ConfigError whose message names the setting, so the process stops before it serves.
 * An unset or blank variable takes its default. Messages never echo a URL's password.
 */
import { createPublicKey, type JsonWebKey } from "node:crypto";
import { z } from "zod";

export const SERVICE_NAMES = ["inventory", "reservation", "order"] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Config {
  readonly port: number;
  /** The native gRPC port (grpc-js); null: off. */
  readonly grpcPort: number | null;
  readonly host: string;
  /** null: start embedded Postgres shards under dataDir. */
  readonly shardUrls: string[] | null;
  /** null: start embedded Redis nodes. */
  readonly redisUrls: string[] | null;
  readonly logLevel: LogLevel;
  readonly services: ServiceName[];
  readonly corsOrigins: string[];
  readonly maxRequestBytes: number;
  readonly dbPoolMax: number;
  readonly migrateOnStart: boolean;
  /** Raw bucket map; src/shard parses and validates it. */
  readonly bucketMap: string | null;
  readonly dataDir: string;
  readonly embeddedShards: number;
  readonly embeddedRedisNodes: number;
  readonly drainTimeoutMs: number;
  readonly defaultDeadlineMs: number;
  readonly maxDeadlineMs: number;
  readonly lockTtlMs: number;
  readonly reservationDefaultTtlS: number;
  readonly reservationMaxTtlS: number;
  readonly sweepIntervalMs: number;
  readonly intentTimeoutMs: number;
  readonly streamHeartbeatMs: number;
  readonly idempotencyRetentionH: number;
  readonly rateLimitUserRps: number;
  readonly rateLimitServiceRps: number;
  readonly faultPoint: FaultPointName | null;
  /** Where finished spans go: nowhere (no-op tracer), or OTLP over HTTP. */
  readonly otelExporter: OtelExporter;
  /** OTLP/HTTP base URL; spans are posted to `<endpoint>/v1/traces`. */
  readonly otelEndpoint: string;
  /** `service.name` on every span. */
  readonly otelServiceName: string;
  /** Auth (docs/auth.md): a JWKS URL to fetch verification keys from, or null. */
  readonly authJwksUrl: string | null;
  /** Auth: inline verification keys (JWKS JSON or one PEM SPKI public key), or null. */
  readonly authPublicKeys: string | null;
  /** Auth: the required `iss` claim; null only in dev mode (then `shop-mesh-dev`). */
  readonly authIssuer: string | null;
  /** Auth: the required `aud` claim; null only in dev mode (then `shop-mesh`). */
  readonly authAudience: string | null;
  /** Auth: JWS algorithms accepted (an allow-list; never `none` or HMAC). */
  readonly authAlgorithms: AuthAlgorithm[];
  /** Auth dev mode: an in-memory key pair and printed tokens. Never in production. */
  readonly authDev: boolean;
}

/** Asymmetric JWS algorithms a token may be signed with; `none` and HS* are never accepted. */
export const AUTH_ALGORITHMS = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
  "Ed25519",
] as const;
export type AuthAlgorithm = (typeof AUTH_ALGORITHMS)[number];

export const OTEL_EXPORTERS = ["none", "otlp"] as const;
export type OtelExporter = (typeof OTEL_EXPORTERS)[number];

/** Points inside the reservation saga where FAULT_POINT makes the process kill itself (fault tests only). */
export const SAGA_FAULT_POINTS = ["after_intent", "after_first_shard", "after_holds"] as const;
/** Points between an order's commit and its stock step on the sellers' shards. */
export const ORDER_FAULT_POINTS = ["order_before_sale", "cancel_before_return"] as const;
export const FAULT_POINTS = [...SAGA_FAULT_POINTS, ...ORDER_FAULT_POINTS] as const;
export type FaultPointName = (typeof FAULT_POINTS)[number];

/** A setting is missing its mark; `setting` is the first bad variable, `message` names every one. */
export class ConfigError extends Error {
  readonly setting: string;

  constructor(setting: string, message: string) {
    super(message);
    this.name = "ConfigError";
    this.setting = setting;
  }
}

const KiB = 1024;
const MiB = 1024 * KiB;

const integer = (min: number, max: number) =>
  z
    .string()
    .refine((s) => /^\d+$/.test(s) && Number(s) >= min && Number(s) <= max, {
      message: `must be an integer ${min}-${max}`,
    })
    .transform(Number);

const oneOf = <T extends string>(values: readonly T[]) =>
  z.string().refine((s): s is T => (values as readonly string[]).includes(s), {
    message: `must be one of ${values.join("|")}`,
  });

/** A port number, or "off". */
const portOrOff = z
  .string()
  .refine((s) => s === "off" || (/^\d+$/.test(s) && Number(s) <= 65535), {
    message: 'must be an integer 0-65535 or "off"',
  })
  .transform((s) => (s === "off" ? null : Number(s)));

const boolean = z
  .string()
  .refine((s) => s === "true" || s === "false", { message: "must be true or false" })
  .transform((s) => s === "true");

const nonEmpty = z.string().refine((s) => !/\s/.test(s), { message: "must not contain spaces" });

const list = (s: string) => s.split(",").map((item) => item.trim());

/** Comma-separated URLs with one of `schemes`; problems are reported by position, never by value. */
const urlList = (schemes: readonly string[], what: string) =>
  z.string().transform((s, ctx) => {
    const urls = list(s);
    const seen = new Map<string, number>();
    for (const [i, raw] of urls.entries()) {
      const problem = urlProblem(raw, schemes, what);
      if (problem) {
        ctx.addIssue({ code: "custom", message: `entry ${i} ${problem}` });
        continue;
      }
      const u = new URL(raw);
      const key = `${u.hostname}:${u.port}${u.pathname}`;
      const first = seen.get(key);
      if (first !== undefined) ctx.addIssue({ code: "custom", message: `entry ${i} repeats entry ${first}` });
      else seen.set(key, i);
    }
    return urls;
  });

function urlProblem(raw: string, schemes: readonly string[], what: string): string | undefined {
  if (raw === "") return "is empty";
  if (!URL.canParse(raw)) return `is not a valid ${what} URL`;
  const u = new URL(raw);
  if (!schemes.includes(u.protocol)) {
    const expected = schemes.map((p) => `${p}//`).join(" or ");
    return `has scheme "${u.protocol}", expected ${expected}`;
  }
  if (u.hostname === "") return "has no host";
  return undefined;
}

const services = z.string().transform((s, ctx) => {
  const names = [...new Set(list(s).filter((n) => n !== ""))];
  for (const n of names) {
    if (!(SERVICE_NAMES as readonly string[]).includes(n)) {
      ctx.addIssue({
        code: "custom",
        message: `unknown service "${n}" (expected ${SERVICE_NAMES.join(", ")})`,
      });
    }
  }
  if (names.length === 0) ctx.addIssue({ code: "custom", message: "must name at least one service" });
  return names as ServiceName[];
});

const origins = z.string().transform((s, ctx) => {
  const items = list(s).filter((o) => o !== "");
  for (const o of items) {
    const ok =
      URL.canParse(o) && ["http:", "https:"].includes(new URL(o).protocol) && new URL(o).origin === o;
    if (!ok) ctx.addIssue({ code: "custom", message: `"${o}" is not an origin like https://shop.example` });
  }
  return [...new Set(items)];
});

/** JWS algorithms: a non-empty allow-list of asymmetric ones. */
const authAlgorithms = z.string().transform((s, ctx) => {
  const names = [...new Set(list(s).filter((n) => n !== ""))];
  for (const n of names) {
    if (n.toLowerCase() === "none" || /^HS\d+$/i.test(n))
      ctx.addIssue({ code: "custom", message: `"${n}" is refused: only asymmetric algorithms are accepted` });
    else if (!(AUTH_ALGORITHMS as readonly string[]).includes(n))
      ctx.addIssue({
        code: "custom",
        message: `unknown algorithm "${n}" (expected ${AUTH_ALGORITHMS.join(", ")})`,
      });
  }
  if (names.length === 0) ctx.addIssue({ code: "custom", message: "must name at least one algorithm" });
  return names as AuthAlgorithm[];
});

/** Public keys only (a JWKS or one PEM SPKI): a private or symmetric key here is a mistake, refused. */
const publicKeys = z.string().superRefine((s, ctx) => {
  const problem = publicKeysProblem(s);
  if (problem) ctx.addIssue({ code: "custom", message: problem });
});

function publicKeysProblem(s: string): string | undefined {
  if (s.startsWith("-----BEGIN")) {
    if (!s.startsWith("-----BEGIN PUBLIC KEY-----")) return "must be a PEM public key (BEGIN PUBLIC KEY)";
    try {
      createPublicKey(s.replaceAll("\\n", "\n"));
      return undefined;
    } catch {
      return "is not a readable PEM public key";
    }
  }
  let jwks: unknown;
  try {
    jwks = JSON.parse(s);
  } catch {
    return 'must be a JWKS ({"keys":[…]}) or a PEM public key';
  }
  const keys = (jwks as { keys?: unknown }).keys;
  if (!Array.isArray(keys) || keys.length === 0) return 'must be a JWKS with a non-empty "keys" array';
  for (const [i, key] of keys.entries()) {
    const k = key as Record<string, unknown>;
    if (typeof k !== "object" || k === null || k.kty === "oct" || "d" in k)
      return `key ${i} must be a public asymmetric key (no "d", not "oct")`;
    try {
      createPublicKey({ key: k as JsonWebKey, format: "jwk" });
    } catch {
      return `key ${i} is not a readable JWK`;
    }
  }
  return undefined;
}

/** Every setting: its variable, its parser and its default. The README table is derived from these. */
const schema = z.object({
  /** Port the one plaintext server (gRPC, gRPC-Web, Connect over h2c and HTTP/1.1) listens on; 0 picks one. */
  PORT: integer(0, 65535).default(8080),
  /** Port of the native gRPC server (grpc-js: gRPC only, far less CPU per call); 0 picks one, "off" disables it. */
  GRPC_PORT: portOrOff.default(8081),
  /** Interface to listen on. */
  HOST: nonEmpty.default("0.0.0.0"),
  /** Comma-separated postgres:// URLs, one per physical shard, in shard order; unset starts embedded Postgres. */
  SHARD_URLS: urlList(["postgres:", "postgresql:"], "postgres").optional(),
  /** Comma-separated redis:// URLs of independent nodes forming the Redlock quorum; unset starts embedded Redis. */
  REDIS_URLS: urlList(["redis:", "rediss:"], "redis").optional(),
  /** Log level: fatal, error, warn, info, debug or trace. */
  LOG_LEVEL: oneOf(LOG_LEVELS).default("info"),
  /** Comma list of the services this process serves: inventory, reservation, order. */
  SERVICES: services.default([...SERVICE_NAMES]),
  /** Comma list of exact browser origins allowed by CORS (e.g. https://shop.example); empty allows none. */
  CORS_ORIGINS: origins.default([]),
  /** Largest request message accepted, in bytes (1 KiB to 64 MiB). */
  MAX_REQUEST_BYTES: integer(KiB, 64 * MiB).default(4 * MiB),
  /** Postgres connections per shard per process. */
  DB_POOL_MAX: integer(1, 200).default(10),
  /** Run migrations on every shard at start; defaults to true when Postgres is embedded, false otherwise. */
  MIGRATE_ON_START: boolean.optional(),
  /** Bucket ranges to shard indexes, e.g. "0-511:0,512-1023:1"; unset spreads buckets evenly. */
  BUCKET_MAP: z.string().optional(),
  /** Folder for embedded Postgres and Redis state. */
  DATA_DIR: z.string().default(".data"),
  /** Number of embedded Postgres shards (databases) when SHARD_URLS is unset. */
  EMBEDDED_SHARDS: integer(1, 16).default(3),
  /** Number of embedded Redis nodes when REDIS_URLS is unset: 1, 3 or 5. */
  EMBEDDED_REDIS_NODES: oneOf(["1", "3", "5"]).transform(Number).default(3),
  /** On SIGTERM, how long in-flight calls and streams may run before the process exits, in ms. */
  DRAIN_TIMEOUT_MS: integer(0, 600_000).default(15_000),
  /** Deadline applied to a call that sets none, in ms. */
  DEFAULT_DEADLINE_MS: integer(1, 3_600_000).default(10_000),
  /** Longest deadline honoured; a longer one is cut to this, in ms. */
  MAX_DEADLINE_MS: integer(1, 3_600_000).default(60_000),
  /** Redlock lock time-to-live, in ms. */
  LOCK_TTL_MS: integer(100, 600_000).default(5_000),
  /** Reservation time-to-live when the request sets none, in seconds. */
  RESERVATION_DEFAULT_TTL_S: integer(1, 86_400).default(600),
  /** Longest reservation time-to-live a request may ask for, in seconds. */
  RESERVATION_MAX_TTL_S: integer(1, 604_800).default(3_600),
  /** How often the sweeper releases expired reservations and orphaned holds, in ms. */
  SWEEP_INTERVAL_MS: integer(100, 3_600_000).default(5_000),
  /** A reservation saga still PENDING after this long is treated as crashed: failed and its holds released, in ms. */
  INTENT_TIMEOUT_MS: integer(1_000, 3_600_000).default(60_000),
  /** How often an idle watch stream sends a heartbeat (and re-checks the database for missed events), in ms. */
  STREAM_HEARTBEAT_MS: integer(100, 300_000).default(15_000),
  /** Finished idempotency records are kept this long (hours); a replay after that is a new request. */
  IDEMPOTENCY_RETENTION_H: integer(1, 8_760).default(72),
  /** Calls per second per plain user (token without operator/service scope), over all instances; 0 = no limit. */
  RATE_LIMIT_USER_RPS: integer(0, 1_000_000).default(50),
  /** Calls per second per service or operator principal, over all instances; 0 = no limit. */
  RATE_LIMIT_SERVICE_RPS: integer(0, 1_000_000).default(0),
  /** Fault tests only: SIGKILL the process at this point of a cross-shard reservation. Never set it in production. */
  FAULT_POINT: oneOf(FAULT_POINTS).optional(),
  /** Trace exporter: none (traces off; incoming trace ids still reach the logs) or otlp (OTLP over HTTP). */
  OTEL_EXPORTER: oneOf(OTEL_EXPORTERS).default("none"),
  /** OTLP/HTTP collector base URL when OTEL_EXPORTER=otlp; spans go to <url>/v1/traces. */
  OTEL_EXPORTER_OTLP_ENDPOINT: z
    .string()
    .superRefine((s, ctx) => {
      const problem = urlProblem(s, ["http:", "https:"], "http");
      if (problem) ctx.addIssue({ code: "custom", message: problem });
    })
    .transform((s) => s.replace(/\/+$/, ""))
    .default("http://localhost:4318"),
  /** service.name resource attribute of the spans. */
  OTEL_SERVICE_NAME: nonEmpty.default("shop-mesh"),
  /** URL of the token issuer's JWKS (https:// or http://), fetched and cached; or set AUTH_PUBLIC_KEYS. */
  AUTH_JWKS_URL: z
    .string()
    .superRefine((s, ctx) => {
      const problem = urlProblem(s, ["https:", "http:"], "http");
      if (problem) ctx.addIssue({ code: "custom", message: problem });
    })
    .optional(),
  /** Token verification keys inline: a JWKS (`{"keys":[…]}`) or one PEM public key (SPKI); or set AUTH_JWKS_URL. */
  AUTH_PUBLIC_KEYS: publicKeys.optional(),
  /** The `iss` every token must carry; required with AUTH_JWKS_URL or AUTH_PUBLIC_KEYS. */
  AUTH_ISSUER: z.string().optional(),
  /** The `aud` every token must carry; required with AUTH_JWKS_URL or AUTH_PUBLIC_KEYS. */
  AUTH_AUDIENCE: z.string().optional(),
  /** Comma list of accepted JWS algorithms (asymmetric only: `none` and HS* are refused). */
  AUTH_ALGORITHMS: authAlgorithms.default(["RS256", "ES256", "EdDSA"]),
  /** Dev only: generate a key pair at start and print an operator and a buyer token. Never in production. */
  AUTH_DEV: boolean.default(false),
});

type Env = Record<string, string | undefined>;

/** Reads, validates and freezes the configuration. Throws ConfigError naming each bad setting. */
export function loadConfig(env: Env = process.env): Config {
  const input: Env = {};
  for (const key of Object.keys(schema.shape)) {
    const value = env[key]?.trim();
    if (value !== undefined && value !== "") input[key] = value;
  }
  const parsed = schema.safeParse(input);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => {
      const key = String(issue.path[0]);
      return `${key}: ${issue.message}${shown(key, input[key])}`;
    });
    throw new ConfigError(String(parsed.error.issues[0]?.path[0]), lines.join("\n"));
  }
  const e = parsed.data;
  const config: Config = {
    port: e.PORT,
    grpcPort: e.GRPC_PORT,
    host: e.HOST,
    shardUrls: e.SHARD_URLS ?? null,
    redisUrls: e.REDIS_URLS ?? null,
    logLevel: e.LOG_LEVEL,
    services: e.SERVICES,
    corsOrigins: e.CORS_ORIGINS,
    maxRequestBytes: e.MAX_REQUEST_BYTES,
    dbPoolMax: e.DB_POOL_MAX,
    migrateOnStart: e.MIGRATE_ON_START ?? e.SHARD_URLS === undefined,
    bucketMap: e.BUCKET_MAP ?? null,
    dataDir: e.DATA_DIR,
    embeddedShards: e.EMBEDDED_SHARDS,
    embeddedRedisNodes: e.EMBEDDED_REDIS_NODES,
    drainTimeoutMs: e.DRAIN_TIMEOUT_MS,
    defaultDeadlineMs: e.DEFAULT_DEADLINE_MS,
    maxDeadlineMs: e.MAX_DEADLINE_MS,
    lockTtlMs: e.LOCK_TTL_MS,
    reservationDefaultTtlS: e.RESERVATION_DEFAULT_TTL_S,
    reservationMaxTtlS: e.RESERVATION_MAX_TTL_S,
    sweepIntervalMs: e.SWEEP_INTERVAL_MS,
    intentTimeoutMs: e.INTENT_TIMEOUT_MS,
    streamHeartbeatMs: e.STREAM_HEARTBEAT_MS,
    idempotencyRetentionH: e.IDEMPOTENCY_RETENTION_H,
    rateLimitUserRps: e.RATE_LIMIT_USER_RPS,
    rateLimitServiceRps: e.RATE_LIMIT_SERVICE_RPS,
    faultPoint: e.FAULT_POINT ?? null,
    otelExporter: e.OTEL_EXPORTER,
    otelEndpoint: e.OTEL_EXPORTER_OTLP_ENDPOINT,
    otelServiceName: e.OTEL_SERVICE_NAME,
    authJwksUrl: e.AUTH_JWKS_URL ?? null,
    authPublicKeys: e.AUTH_PUBLIC_KEYS ?? null,
    authIssuer: e.AUTH_ISSUER ?? null,
    authAudience: e.AUTH_AUDIENCE ?? null,
    authAlgorithms: e.AUTH_ALGORITHMS,
    authDev: e.AUTH_DEV,
  };
  checkAuthSettings(config);
  if (config.grpcPort !== null && config.grpcPort !== 0 && config.grpcPort === config.port) {
    throw new ConfigError("GRPC_PORT", `GRPC_PORT: must differ from PORT (got "${config.grpcPort}")`);
  }
  checkOrder("DEFAULT_DEADLINE_MS", config.defaultDeadlineMs, "MAX_DEADLINE_MS", config.maxDeadlineMs);
  checkOrder(
    "RESERVATION_DEFAULT_TTL_S",
    config.reservationDefaultTtlS,
    "RESERVATION_MAX_TTL_S",
    config.reservationMaxTtlS,
  );
  return deepFreeze(config);
}

/** The offending value for a message; URL lists are never echoed (they may carry passwords). */
function shown(key: string, value: string | undefined): string {
  if (
    value === undefined ||
    key.endsWith("_URLS") ||
    key.endsWith("_ENDPOINT") ||
    key.startsWith("AUTH_PUBLIC_KEYS") ||
    key.endsWith("_URL")
  )
    return "";
  return ` (got ${JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value)})`;
}

/** The auth settings that only make sense together (docs/auth.md). */
function checkAuthSettings(c: Config): void {
  const keys = c.authJwksUrl !== null || c.authPublicKeys !== null;
  if (c.authJwksUrl !== null && c.authPublicKeys !== null)
    throw new ConfigError(
      "AUTH_PUBLIC_KEYS",
      "AUTH_PUBLIC_KEYS: set either AUTH_JWKS_URL or AUTH_PUBLIC_KEYS, not both",
    );
  if (keys && c.authDev)
    throw new ConfigError(
      "AUTH_DEV",
      "AUTH_DEV: dev mode signs its own tokens; unset AUTH_JWKS_URL/AUTH_PUBLIC_KEYS",
    );
  if (keys && c.authIssuer === null)
    throw new ConfigError("AUTH_ISSUER", "AUTH_ISSUER: is required with AUTH_JWKS_URL or AUTH_PUBLIC_KEYS");
  if (keys && c.authAudience === null)
    throw new ConfigError(
      "AUTH_AUDIENCE",
      "AUTH_AUDIENCE: is required with AUTH_JWKS_URL or AUTH_PUBLIC_KEYS",
    );
}

/**
 * A process that serves calls must verify tokens: keys configured, or dev mode asked for. Checked by
 * main.ts right after loadConfig and again by createApp, so nothing ever serves unauthenticated.
 */
export function requireAuthConfigured(c: Pick<Config, "authJwksUrl" | "authPublicKeys" | "authDev">): void {
  if (c.authJwksUrl === null && c.authPublicKeys === null && !c.authDev)
    throw new ConfigError(
      "AUTH_JWKS_URL",
      "AUTH_JWKS_URL or AUTH_PUBLIC_KEYS: one is required to verify callers' tokens " +
        "(with AUTH_ISSUER and AUTH_AUDIENCE); for a local try-out set AUTH_DEV=true (never in production)",
    );
}

function checkOrder(lowKey: string, low: number, highKey: string, high: number): void {
  if (low > high) {
    throw new ConfigError(lowKey, `${lowKey}: must not exceed ${highKey} (${high}) (got "${low}")`);
  }
}

function deepFreeze<T extends object>(o: T): T {
  for (const v of Object.values(o)) if (v !== null && typeof v === "object") Object.freeze(v);
  return Object.freeze(o);
}
