import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { resourcesSchema } from "./resources.js";

const port = z.coerce.number().int().min(0).max(65535);
const url = (protocols: string[]) =>
  z.string().refine((value) => {
    try {
      return protocols.includes(new URL(value).protocol);
    } catch {
      return false;
    }
  }, `must be a ${protocols.join(" or ")} URL`);

/** Every setting, its default, and the environment variable that overrides it. */
const settings = {
  host: { env: "UMW_HOST", schema: z.string().min(1).default("127.0.0.1") },
  logLevel: { env: "UMW_LOG_LEVEL", schema: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info") },
  certsDir: { env: "UMW_CERTS_DIR", schema: z.string().min(1).default(".certs") },
  drainTimeoutMs: { env: "UMW_DRAIN_TIMEOUT_MS", schema: z.coerce.number().int().min(0).default(10_000) },
  redisUrl: { env: "UMW_REDIS_URL", schema: url(["redis:", "rediss:"]).default("redis://127.0.0.1:16379") },
  pgUrl: { env: "UMW_PG_URL", schema: url(["postgres:", "postgresql:"]).default("postgres://umw:umw@127.0.0.1:15432/umw") },
  pgReplicaUrl: { env: "UMW_PG_REPLICA_URL", schema: url(["postgres:", "postgresql:"]).default("postgres://umw:umw@127.0.0.1:15433/umw") },
  kafkaBrokers: {
    env: "UMW_KAFKA_BROKERS",
    schema: z
      .string()
      .default("127.0.0.1:19092")
      .transform((value) => value.split(",").map((broker) => broker.trim()).filter(Boolean))
      .pipe(z.array(z.string().regex(/^[^:\s]+:\d+$/, "must be host:port")).min(1)),
  },
  topicPrefix: { env: "UMW_TOPIC_PREFIX", schema: z.string().default("") },
  /** Partitions of the topics a service creates at start (existing topics are left as they are). */
  topicPartitions: { env: "UMW_TOPIC_PARTITIONS", schema: z.coerce.number().int().min(1).max(1_000).default(6) },
  /** Prefix of every Redis key and channel (shared by the query service and the cache updater). */
  cacheKeyPrefix: { env: "UMW_CACHE_KEY_PREFIX", schema: z.string().default("") },
  /** Attempts at a failing command before it goes to the dead-letter topic. */
  processorMaxAttempts: { env: "UMW_PROCESSOR_MAX_ATTEMPTS", schema: z.coerce.number().int().min(1).max(100).default(5) },
  /** How long a stored Idempotency-Key answer is replayed (published in `idempotency-key-expires`). */
  idempotencyTtlMs: { env: "UMW_IDEMPOTENCY_TTL_MS", schema: z.coerce.number().int().min(1_000).default(86_400_000) },
  idempotencySweepMs: { env: "UMW_IDEMPOTENCY_SWEEP_MS", schema: z.coerce.number().int().min(100).default(60_000) },
  /** WatchCommand's polling fallback while the LISTEN connection is down. */
  commandWatchPollMs: { env: "UMW_COMMAND_WATCH_POLL_MS", schema: z.coerce.number().int().min(50).default(1_000) },
  /** mTLS peers allowed to assert the caller (x-umw-principal, x-umw-connection-id): the edge. */
  trustedPrincipalPeers: {
    env: "UMW_TRUSTED_PRINCIPAL_PEERS",
    schema: z
      .string()
      .default("edge")
      .transform((value) => value.split(",").map((peer) => peer.trim()).filter(Boolean)),
  },
  /** Outbox rows the relay reads per round. */
  relayBatchSize: { env: "UMW_RELAY_BATCH_SIZE", schema: z.coerce.number().int().min(1).default(500) },
  /** The relay's polling fallback when no NOTIFY wakes it. */
  relayPollMs: { env: "UMW_RELAY_POLL_MS", schema: z.coerce.number().int().min(10).default(500) },
  /** How often a standby relay tries to take the leader lock. */
  relayLockRetryMs: { env: "UMW_RELAY_LOCK_RETRY_MS", schema: z.coerce.number().int().min(50).default(1_000) },
  /** How long published outbox rows are kept before pruning. */
  outboxRetentionMs: { env: "UMW_OUTBOX_RETENTION_MS", schema: z.coerce.number().int().min(0).default(3_600_000) },
  /** Deadline of each call the edge makes upstream. */
  edgeTimeoutMs: { env: "UMW_EDGE_TIMEOUT_MS", schema: z.coerce.number().int().positive().default(15_000) },
  edgeMaxBodyBytes: { env: "UMW_EDGE_MAX_BODY_BYTES", schema: z.coerce.number().int().positive().default(1_048_576) },
  /** Comma-separated origins allowed by CORS; `*` allows any. */
  edgeCorsOrigins: {
    env: "UMW_EDGE_CORS_ORIGINS",
    schema: z
      .string()
      .default("*")
      .transform((value) => value.split(",").map((origin) => origin.trim()).filter(Boolean)),
  },
  /**
   * Bounds of every listener (the edge's HTTP/1.1 and h2c servers, the mesh gRPC servers) and of
   * every call deadline, so that no client can hold a connection or a call open for ever.
   */
  /** Longest deadline a caller may ask for (Connect-Timeout-Ms, grpc-timeout); longer ones are clamped to it. */
  maxCallTimeoutMs: { env: "UMW_MAX_CALL_TIMEOUT_MS", schema: z.coerce.number().int().positive().max(2_147_483_647).default(3_600_000) },
  /** HTTP/1.1: time to receive a request's headers; the connection is closed (408) past it. */
  httpHeadersTimeoutMs: { env: "UMW_HTTP_HEADERS_TIMEOUT_MS", schema: z.coerce.number().int().positive().default(10_000) },
  /** HTTP/1.1 and HTTP/2: time to receive a whole request (headers and body). */
  httpRequestTimeoutMs: { env: "UMW_HTTP_REQUEST_TIMEOUT_MS", schema: z.coerce.number().int().positive().default(30_000) },
  /** HTTP/1.1: how long a kept-alive connection may wait idle for its next request. */
  httpIdleTimeoutMs: { env: "UMW_HTTP_IDLE_TIMEOUT_MS", schema: z.coerce.number().int().positive().default(5_000) },
  /** HTTP/2 (h2c): a session with no frame in either direction for this long is closed (also a preface-only connection). */
  http2SessionTimeoutMs: { env: "UMW_HTTP2_SESSION_TIMEOUT_MS", schema: z.coerce.number().int().positive().default(120_000) },
  /** Mesh gRPC servers: a connection without calls for this long gets GOAWAY. */
  grpcMaxConnectionIdleMs: { env: "UMW_GRPC_MAX_CONNECTION_IDLE_MS", schema: z.coerce.number().int().positive().default(300_000) },
  /** Mesh gRPC servers: a connection older than this gets GOAWAY (clients reconnect; spreads load); 0 = no limit, so long streams are not cut. */
  grpcMaxConnectionAgeMs: { env: "UMW_GRPC_MAX_CONNECTION_AGE_MS", schema: z.coerce.number().int().min(0).default(0) },
  /** Mesh gRPC servers: how long calls may finish on a connection past its age before it is closed. */
  grpcMaxConnectionAgeGraceMs: { env: "UMW_GRPC_MAX_CONNECTION_AGE_GRACE_MS", schema: z.coerce.number().int().positive().default(60_000) },
  /** Mesh gRPC servers: keepalive ping interval, and how long a ping may go unanswered before the connection is closed. */
  grpcKeepaliveTimeMs: { env: "UMW_GRPC_KEEPALIVE_TIME_MS", schema: z.coerce.number().int().positive().default(60_000) },
  grpcKeepaliveTimeoutMs: { env: "UMW_GRPC_KEEPALIVE_TIMEOUT_MS", schema: z.coerce.number().int().positive().default(20_000) },
  /** Optional cleartext HTTP/2 port of the edge (gRPC and h2 clients); unset = none. */
  edgeH2cPort: { env: "UMW_EDGE_H2C_PORT", schema: port.optional() },
  /**
   * TLS next to plain HTTP at the edge (the Node edge's own HTTPS listener; Envoy's second listener
   * from the control plane): ALPN h2 and http/1.1, so browsers get HTTP/2. The port turns it on; the
   * certificate chain and key are PEM files (for Envoy: paths on Envoy's machine). Unset = none.
   */
  edgeTlsPort: { env: "UMW_EDGE_TLS_PORT", schema: port.optional() },
  edgeTlsCert: { env: "UMW_EDGE_TLS_CERT", schema: z.string().min(1).optional() },
  edgeTlsKey: { env: "UMW_EDGE_TLS_KEY", schema: z.string().min(1).optional() },
  queryPort: { env: "UMW_QUERY_PORT", schema: port.default(7001) },
  commandPort: { env: "UMW_COMMAND_PORT", schema: port.default(7002) },
  realtimePort: { env: "UMW_REALTIME_PORT", schema: port.default(7003) },
  relayPort: { env: "UMW_RELAY_PORT", schema: port.default(7004) },
  processorPort: { env: "UMW_PROCESSOR_PORT", schema: port.default(7005) },
  cacheUpdaterPort: { env: "UMW_CACHE_UPDATER_PORT", schema: port.default(7006) },
  edgePort: { env: "UMW_EDGE_PORT", schema: port.default(8080) },
  metricsPort: { env: "UMW_METRICS_PORT", schema: port.default(9464) },
  /** Where the mesh services are reachable from each other (host:port); defaults to host + port. */
  queryAddress: { env: "UMW_QUERY_ADDRESS", schema: z.string().optional() },
  commandAddress: { env: "UMW_COMMAND_ADDRESS", schema: z.string().optional() },
  realtimeAddress: { env: "UMW_REALTIME_ADDRESS", schema: z.string().optional() },
  /** The xDS control plane's port (`umw control-plane`), and where services register with it (host:port; unset = they do not). */
  controlPlanePort: { env: "UMW_CONTROL_PLANE_PORT", schema: port.default(7007) },
  controlPlaneAddress: { env: "UMW_CONTROL_PLANE_ADDRESS", schema: z.string().regex(/^[^:\s]+:\d+$/, "must be host:port").optional() },
  /** Run on the embedded adapters (PGlite, in-process bus, in-memory cache) instead of Postgres, Kafka and Redis; also `umw serve --embedded`. */
  embedded: { env: "UMW_EMBEDDED", schema: z.preprocess((value) => (typeof value === "boolean" ? String(value) : value), z.stringbool()).default(false) },
  /** PGlite's folder in embedded mode; unset = in memory, gone when the process ends. */
  embeddedDataDir: { env: "UMW_EMBEDDED_DATA_DIR", schema: z.string().min(1).optional() },
  /** Resource types by name: backend, cache policy, JSON Schema. JSON in the env var, a mapping in the file. */
  resources: {
    env: "UMW_RESOURCES",
    schema: z.preprocess((value, ctx) => {
      if (typeof value !== "string") return value ?? {};
      try {
        return JSON.parse(value);
      } catch (error) {
        ctx.addIssue({ code: "custom", message: `not JSON: ${(error as Error).message}` });
        return z.NEVER;
      }
    }, resourcesSchema),
  },
} satisfies Record<string, { env: string; schema: z.ZodType }>;

type Settings = typeof settings;
export type Config = { [K in keyof Settings]: z.output<Settings[K]["schema"]> };

/** The environment variable of every setting, for docs and for docker-compose checks. */
export const CONFIG_ENV: Readonly<Record<keyof Config, string>> = Object.fromEntries(
  Object.entries(settings).map(([key, setting]) => [key, setting.env]),
) as Record<keyof Config, string>;

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/**
 * Reads the config: defaults, then the optional file named by UMW_CONFIG (YAML or JSON, keys as
 * in `Config`), then environment variables. A bad value is named with where it came from.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const file = env.UMW_CONFIG ? readConfigFile(env.UMW_CONFIG) : {};
  const unknown = Object.keys(file).filter((key) => !(key in settings));
  if (unknown.length) throw new ConfigError(`config file ${env.UMW_CONFIG}: unknown setting(s) ${unknown.join(", ")}`);
  const config: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [key, setting] of Object.entries(settings)) {
    const fromEnv = env[setting.env];
    const raw = fromEnv !== undefined && fromEnv !== "" ? fromEnv : file[key];
    const result = (setting.schema as z.ZodType).safeParse(raw);
    if (result.success) {
      config[key] = result.data;
    } else {
      const source = fromEnv ? `${setting.env}=${JSON.stringify(fromEnv)}` : `${key}=${JSON.stringify(raw)} in ${env.UMW_CONFIG}`;
      problems.push(`${source}: ${result.error.issues.map((issue) => (issue.path.length ? `${issue.path.join(".")}: ` : "") + issue.message).join("; ")}`);
    }
  }
  if (problems.length) throw new ConfigError(`invalid configuration:\n  ${problems.join("\n  ")}`);
  return config as Config;
}

function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new ConfigError(`UMW_CONFIG=${path}: cannot read the file (${(error as Error).message})`);
  }
  const parsed: unknown = parseYaml(text);
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== "object" || Array.isArray(parsed)) throw new ConfigError(`UMW_CONFIG=${path}: expected a mapping of settings`);
  return parsed as Record<string, unknown>;
}

export function serviceAddress(config: Config, service: "query" | "command" | "realtime"): string {
  const explicit = config[`${service}Address`];
  if (explicit) return explicit;
  const host = config.host === "0.0.0.0" ? "127.0.0.1" : config.host;
  return `${host}:${config[`${service}Port`]}`;
}

/** The edge's TLS listener, when UMW_EDGE_TLS_PORT is set; its certificate and key must be named too. */
export function edgeTls(config: Config): { port: number; certFile: string; keyFile: string } | undefined {
  if (config.edgeTlsPort === undefined) {
    if (config.edgeTlsCert || config.edgeTlsKey) throw new ConfigError("invalid configuration: UMW_EDGE_TLS_CERT / UMW_EDGE_TLS_KEY are set but UMW_EDGE_TLS_PORT is not");
    return undefined;
  }
  if (!config.edgeTlsCert || !config.edgeTlsKey) throw new ConfigError("invalid configuration: UMW_EDGE_TLS_PORT needs UMW_EDGE_TLS_CERT and UMW_EDGE_TLS_KEY (PEM files)");
  return { port: config.edgeTlsPort, certFile: config.edgeTlsCert, keyFile: config.edgeTlsKey };
}
