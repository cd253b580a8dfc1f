import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig, requireAuthConfigured } from "../../src/config.js";

function errorOf(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error(`expected a ConfigError for ${JSON.stringify(env)}`);
}

describe("loadConfig", () => {
  it("defaults every setting (embedded Postgres and Redis)", () => {
    expect(loadConfig({})).toEqual({
      port: 8080,
      grpcPort: 8081,
      host: "0.0.0.0",
      shardUrls: null,
      redisUrls: null,
      logLevel: "info",
      services: ["inventory", "reservation", "order"],
      corsOrigins: [],
      maxRequestBytes: 4_194_304,
      dbPoolMax: 10,
      migrateOnStart: true,
      bucketMap: null,
      dataDir: ".data",
      embeddedShards: 3,
      embeddedRedisNodes: 3,
      drainTimeoutMs: 15_000,
      defaultDeadlineMs: 10_000,
      maxDeadlineMs: 60_000,
      lockTtlMs: 5_000,
      reservationDefaultTtlS: 600,
      reservationMaxTtlS: 3_600,
      sweepIntervalMs: 5_000,
      intentTimeoutMs: 60_000,
      streamHeartbeatMs: 15_000,
      idempotencyRetentionH: 72,
      rateLimitUserRps: 50,
      rateLimitServiceRps: 0,
      faultPoint: null,
      otelExporter: "none",
      otelEndpoint: "http://localhost:4318",
      otelServiceName: "shop-mesh",
      authJwksUrl: null,
      authPublicKeys: null,
      authIssuer: null,
      authAudience: null,
      authAlgorithms: ["RS256", "ES256", "EdDSA"],
      authDev: false,
    });
  });

  it("treats blank variables as unset", () => {
    expect(loadConfig({ PORT: "", SHARD_URLS: "  ", LOG_LEVEL: " " })).toMatchObject({
      port: 8080,
      shardUrls: null,
      logLevel: "info",
    });
  });

  it("reads every setting", () => {
    const config = loadConfig({
      PORT: "0",
      GRPC_PORT: "9090",
      HOST: "127.0.0.1",
      SHARD_URLS: "postgres://u:p@db0:5432/shop, postgresql://u:p@db1/shop",
      REDIS_URLS: "redis://r0:6379,redis://r1:6379,rediss://:pw@r2:6380",
      LOG_LEVEL: "debug",
      SERVICES: "order, reservation",
      CORS_ORIGINS: "https://shop.example,http://localhost:5173",
      MAX_REQUEST_BYTES: "1024",
      DB_POOL_MAX: "20",
      BUCKET_MAP: "0-511:0,512-1023:1",
      DATA_DIR: "/var/lib/shop",
      EMBEDDED_SHARDS: "16",
      EMBEDDED_REDIS_NODES: "5",
      DRAIN_TIMEOUT_MS: "0",
      DEFAULT_DEADLINE_MS: "5000",
      MAX_DEADLINE_MS: "5000",
      LOCK_TTL_MS: "100",
      RESERVATION_DEFAULT_TTL_S: "60",
      RESERVATION_MAX_TTL_S: "120",
      SWEEP_INTERVAL_MS: "250",
      INTENT_TIMEOUT_MS: "2000",
      STREAM_HEARTBEAT_MS: "500",
      IDEMPOTENCY_RETENTION_H: "24",
      RATE_LIMIT_USER_RPS: "7",
      RATE_LIMIT_SERVICE_RPS: "1000",
      FAULT_POINT: "after_intent",
      OTEL_EXPORTER: "otlp",
      OTEL_EXPORTER_OTLP_ENDPOINT: "https://collector.mesh:4318/",
      OTEL_SERVICE_NAME: "shop-orders",
      AUTH_JWKS_URL: "https://id.shop.example/.well-known/jwks.json",
      AUTH_ISSUER: "https://id.shop.example/",
      AUTH_AUDIENCE: "shop-mesh",
      AUTH_ALGORITHMS: "ES256, EdDSA",
    });
    expect(config).toEqual({
      port: 0,
      grpcPort: 9090,
      host: "127.0.0.1",
      shardUrls: ["postgres://u:p@db0:5432/shop", "postgresql://u:p@db1/shop"],
      redisUrls: ["redis://r0:6379", "redis://r1:6379", "rediss://:pw@r2:6380"],
      logLevel: "debug",
      services: ["order", "reservation"],
      corsOrigins: ["https://shop.example", "http://localhost:5173"],
      maxRequestBytes: 1024,
      dbPoolMax: 20,
      migrateOnStart: false, // external shards: migrations are a deliberate step
      bucketMap: "0-511:0,512-1023:1",
      dataDir: "/var/lib/shop",
      embeddedShards: 16,
      embeddedRedisNodes: 5,
      drainTimeoutMs: 0,
      defaultDeadlineMs: 5000,
      maxDeadlineMs: 5000,
      lockTtlMs: 100,
      reservationDefaultTtlS: 60,
      reservationMaxTtlS: 120,
      sweepIntervalMs: 250,
      intentTimeoutMs: 2_000,
      streamHeartbeatMs: 500,
      idempotencyRetentionH: 24,
      rateLimitUserRps: 7,
      rateLimitServiceRps: 1000,
      faultPoint: "after_intent",
      otelExporter: "otlp",
      otelEndpoint: "https://collector.mesh:4318",
      otelServiceName: "shop-orders",
      authJwksUrl: "https://id.shop.example/.well-known/jwks.json",
      authPublicKeys: null,
      authIssuer: "https://id.shop.example/",
      authAudience: "shop-mesh",
      authAlgorithms: ["ES256", "EdDSA"],
      authDev: false,
    });
  });

  it("defaults MIGRATE_ON_START by whether Postgres is embedded, and honours it when set", () => {
    expect(loadConfig({ REDIS_URLS: "redis://r:6379" }).migrateOnStart).toBe(true);
    expect(loadConfig({ SHARD_URLS: "postgres://db/shop" }).migrateOnStart).toBe(false);
    expect(loadConfig({ SHARD_URLS: "postgres://db/shop", MIGRATE_ON_START: "true" }).migrateOnStart).toBe(
      true,
    );
    expect(loadConfig({ MIGRATE_ON_START: "false" }).migrateOnStart).toBe(false);
  });

  it("turns the native gRPC port off, lets both ports pick free ones, and refuses one port twice", () => {
    expect(loadConfig({ GRPC_PORT: "off" }).grpcPort).toBeNull();
    expect(loadConfig({ PORT: "0", GRPC_PORT: "0" })).toMatchObject({ port: 0, grpcPort: 0 });
    expect(loadConfig({ PORT: "9000", GRPC_PORT: "8080" })).toMatchObject({ port: 9000, grpcPort: 8080 });
    const clash = errorOf({ PORT: "8081" });
    expect(clash.setting).toBe("GRPC_PORT");
    expect(clash.message).toBe('GRPC_PORT: must differ from PORT (got "8081")');
  });

  it("allows partial embedding: only the missing half is embedded", () => {
    const config = loadConfig({ SHARD_URLS: "postgres://db/shop" });
    expect(config.shardUrls).toEqual(["postgres://db/shop"]);
    expect(config.redisUrls).toBeNull();
  });

  it("returns a frozen object with frozen lists", () => {
    const config = loadConfig({ SHARD_URLS: "postgres://db/shop" });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.services)).toBe(true);
    expect(Object.isFrozen(config.shardUrls)).toBe(true);
    expect(() => config.services.push("order")).toThrow(TypeError);
  });

  it.each([
    ["PORT", "abc", 'PORT: must be an integer 0-65535 (got "abc")'],
    ["PORT", "65536", "PORT: must be an integer 0-65535"],
    ["GRPC_PORT", "65536", 'GRPC_PORT: must be an integer 0-65535 or "off" (got "65536")'],
    ["GRPC_PORT", "no", 'GRPC_PORT: must be an integer 0-65535 or "off" (got "no")'],
    ["HOST", "local host", "HOST: must not contain spaces"],
    [
      "SHARD_URLS",
      "mysql://db/shop",
      'SHARD_URLS: entry 0 has scheme "mysql:", expected postgres:// or postgresql://',
    ],
    ["SHARD_URLS", "postgres://db/a,not a url", "SHARD_URLS: entry 1 is not a valid postgres URL"],
    ["SHARD_URLS", "postgres://db/a,,postgres://db/b", "SHARD_URLS: entry 1 is empty"],
    ["SHARD_URLS", "postgres://db/a,postgres://db/a", "SHARD_URLS: entry 1 repeats entry 0"],
    ["REDIS_URLS", "http://r:6379", 'REDIS_URLS: entry 0 has scheme "http:", expected redis:// or rediss://'],
    ["LOG_LEVEL", "verbose", "LOG_LEVEL: must be one of fatal|error|warn|info|debug|trace"],
    ["SERVICES", "order,payments", 'SERVICES: unknown service "payments"'],
    ["SERVICES", ",", "SERVICES: must name at least one service"],
    ["CORS_ORIGINS", "https://shop.example/", 'CORS_ORIGINS: "https://shop.example/" is not an origin'],
    ["CORS_ORIGINS", "*", 'CORS_ORIGINS: "*" is not an origin'],
    ["MAX_REQUEST_BYTES", "1023", "MAX_REQUEST_BYTES: must be an integer 1024-67108864"],
    ["DB_POOL_MAX", "0", "DB_POOL_MAX: must be an integer 1-200"],
    ["MIGRATE_ON_START", "yes", "MIGRATE_ON_START: must be true or false"],
    ["EMBEDDED_SHARDS", "17", "EMBEDDED_SHARDS: must be an integer 1-16"],
    ["EMBEDDED_REDIS_NODES", "2", "EMBEDDED_REDIS_NODES: must be one of 1|3|5"],
    ["DRAIN_TIMEOUT_MS", "-1", "DRAIN_TIMEOUT_MS: must be an integer 0-600000"],
    ["DEFAULT_DEADLINE_MS", "1.5", "DEFAULT_DEADLINE_MS: must be an integer 1-3600000"],
    ["DEFAULT_DEADLINE_MS", "70000", "DEFAULT_DEADLINE_MS: must not exceed MAX_DEADLINE_MS (60000)"],
    ["MAX_DEADLINE_MS", "0", "MAX_DEADLINE_MS: must be an integer 1-3600000"],
    ["LOCK_TTL_MS", "99", "LOCK_TTL_MS: must be an integer 100-600000"],
    ["RESERVATION_DEFAULT_TTL_S", "0", "RESERVATION_DEFAULT_TTL_S: must be an integer 1-86400"],
    [
      "RESERVATION_DEFAULT_TTL_S",
      "7200",
      "RESERVATION_DEFAULT_TTL_S: must not exceed RESERVATION_MAX_TTL_S (3600)",
    ],
    ["RESERVATION_MAX_TTL_S", "1e3", "RESERVATION_MAX_TTL_S: must be an integer 1-604800"],
    ["SWEEP_INTERVAL_MS", "fast", "SWEEP_INTERVAL_MS: must be an integer 100-3600000"],
    ["OTEL_EXPORTER", "jaeger", "OTEL_EXPORTER: must be one of none|otlp"],
    [
      "OTEL_EXPORTER_OTLP_ENDPOINT",
      "grpc://collector:4317",
      'OTEL_EXPORTER_OTLP_ENDPOINT: has scheme "grpc:", expected http:// or https://',
    ],
    ["OTEL_EXPORTER_OTLP_ENDPOINT", "collector", "OTEL_EXPORTER_OTLP_ENDPOINT: is not a valid http URL"],
    ["OTEL_SERVICE_NAME", "shop mesh", "OTEL_SERVICE_NAME: must not contain spaces"],
  ])("rejects %s=%j, naming the setting", (setting, value, message) => {
    const error = errorOf({ [setting]: value });
    expect(error.setting).toBe(setting);
    expect(error.message).toContain(message);
  });

  it("accepts BUCKET_MAP and DATA_DIR as given (src/shard validates the map)", () => {
    expect(loadConfig({ BUCKET_MAP: "whatever", DATA_DIR: "./x" })).toMatchObject({
      bucketMap: "whatever",
      dataDir: "./x",
    });
  });

  it("names every bad setting at once", () => {
    const error = errorOf({ PORT: "x", LOG_LEVEL: "y" });
    expect(error.message.split("\n")).toEqual([
      'PORT: must be an integer 0-65535 (got "x")',
      'LOG_LEVEL: must be one of fatal|error|warn|info|debug|trace (got "y")',
    ]);
  });

  it("never echoes a URL's password", () => {
    for (const value of [
      "mysql://admin:hunter2@db/shop",
      "postgres://admin:hunter2@db/a,postgres://admin:hunter2@db/a",
    ]) {
      const error = errorOf({ SHARD_URLS: value });
      expect(error.message).not.toContain("hunter2");
    }
    expect(errorOf({ REDIS_URLS: "redis://:hunter2@r:6379,nope" }).message).not.toContain("hunter2");
    expect(errorOf({ OTEL_EXPORTER_OTLP_ENDPOINT: "ftp://u:hunter2@c" }).message).not.toContain("hunter2");
  });
});

describe("auth settings", () => {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const pem = publicKey.export({ format: "pem", type: "spki" }).toString();
  const jwks = JSON.stringify({ keys: [publicKey.export({ format: "jwk" })] });
  const withIdentity = { AUTH_ISSUER: "iss", AUTH_AUDIENCE: "aud" };

  it("accepts inline keys as a JWKS or a PEM public key (also with \\n escapes)", () => {
    expect(loadConfig({ AUTH_PUBLIC_KEYS: jwks, ...withIdentity }).authPublicKeys).toBe(jwks);
    expect(loadConfig({ AUTH_PUBLIC_KEYS: pem, ...withIdentity }).authPublicKeys).toBe(pem.trim());
    const escaped = pem.trim().replaceAll("\n", "\\n");
    expect(loadConfig({ AUTH_PUBLIC_KEYS: escaped, ...withIdentity }).authPublicKeys).toBe(escaped);
  });

  it("refuses to serve with no keys unless dev mode is asked for, naming the settings", () => {
    const error = (() => {
      try {
        requireAuthConfigured(loadConfig({}));
      } catch (e) {
        return e as ConfigError;
      }
      throw new Error("expected a ConfigError");
    })();
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toContain("AUTH_JWKS_URL");
    expect(error.message).toContain("AUTH_PUBLIC_KEYS");
    expect(error.message).toContain("AUTH_DEV=true");
    expect(() => requireAuthConfigured(loadConfig({ AUTH_DEV: "true" }))).not.toThrow();
    expect(() =>
      requireAuthConfigured(loadConfig({ AUTH_PUBLIC_KEYS: jwks, ...withIdentity })),
    ).not.toThrow();
  });

  it.each([
    ["AUTH_ALGORITHMS", { AUTH_ALGORITHMS: "none" }, '"none" is refused'],
    ["AUTH_ALGORITHMS", { AUTH_ALGORITHMS: "ES256,HS256" }, '"HS256" is refused'],
    ["AUTH_ALGORITHMS", { AUTH_ALGORITHMS: "XX1" }, 'unknown algorithm "XX1"'],
    ["AUTH_DEV", { AUTH_DEV: "yes" }, "AUTH_DEV: must be true or false"],
    ["AUTH_JWKS_URL", { AUTH_JWKS_URL: "ftp://id/jwks" }, 'AUTH_JWKS_URL: has scheme "ftp:"'],
    ["AUTH_PUBLIC_KEYS", { AUTH_PUBLIC_KEYS: "{}", ...withIdentity }, "non-empty"],
    ["AUTH_PUBLIC_KEYS", { AUTH_PUBLIC_KEYS: "hunter2", ...withIdentity }, "must be a JWKS"],
    [
      "AUTH_PUBLIC_KEYS",
      { AUTH_PUBLIC_KEYS: privateKey.export({ format: "pem", type: "pkcs8" }).toString(), ...withIdentity },
      "must be a PEM public key",
    ],
    [
      "AUTH_PUBLIC_KEYS",
      { AUTH_PUBLIC_KEYS: JSON.stringify({ keys: [privateKey.export({ format: "jwk" })] }), ...withIdentity },
      'no "d"',
    ],
    [
      "AUTH_PUBLIC_KEYS",
      { AUTH_PUBLIC_KEYS: JSON.stringify({ keys: [{ kty: "oct", k: "aHVudGVyMg" }] }), ...withIdentity },
      'not "oct"',
    ],
    ["AUTH_ISSUER", { AUTH_PUBLIC_KEYS: jwks, AUTH_AUDIENCE: "aud" }, "AUTH_ISSUER: is required"],
    ["AUTH_AUDIENCE", { AUTH_PUBLIC_KEYS: jwks, AUTH_ISSUER: "iss" }, "AUTH_AUDIENCE: is required"],
    ["AUTH_DEV", { AUTH_PUBLIC_KEYS: jwks, ...withIdentity, AUTH_DEV: "true" }, "AUTH_DEV: dev mode"],
    [
      "AUTH_PUBLIC_KEYS",
      { AUTH_PUBLIC_KEYS: jwks, AUTH_JWKS_URL: "https://id/jwks", ...withIdentity },
      "not both",
    ],
  ])("rejects bad %s, naming it", (setting, env, message) => {
    const error = errorOf(env as Record<string, string>);
    expect(error.setting).toBe(setting);
    expect(error.message).toContain(message);
    expect(error.message).not.toContain("hunter2");
  });
});
