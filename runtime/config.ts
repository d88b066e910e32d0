import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { parseMeshAuthz } from "./mesh-authorization.js";
import { redactText, redactUrl, registerSecret, registerUrlSecret } from "./redact.js";
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
const count = z.coerce.number().int().min(0);
/** A token bucket written `rps/burst` (`100/200`), or already as an object in a config file. */
const bucketRuleShape = z.object({ rps: z.number().positive(), burst: z.number().int().positive() }, { error: "must be rps/burst, e.g. 100/200" });
const parseBucketRule = (value: string) => {
  const match = /^\s*(\d+(?:\.\d+)?)\s*\/\s*(\d+)\s*$/.exec(value);
  return match ? { rps: Number(match[1]), burst: Number(match[2]) } : value;
};
const bucketRule = z.preprocess((value) => (typeof value === "string" ? parseBucketRule(value) : value), bucketRuleShape);
/** Named buckets written `name=rps/burst,name=rps/burst`. */
const bucketRules = z.preprocess(
  (value) =>
    typeof value === "string"
      ? Object.fromEntries(
          value
            .split(",")
            .map((entry) => entry.trim())
            .filter(Boolean)
            .map((entry) => [entry.slice(0, entry.lastIndexOf("=")).trim(), parseBucketRule(entry.slice(entry.lastIndexOf("=") + 1))]),
        )
      : value,
  z.record(z.string().min(1), bucketRuleShape),
);

/** One setting: the environment variable that sets it, its type with its default, what it does. */
interface Setting {
  readonly env: string;
  readonly schema: z.ZodType;
  readonly description: string;
  /**
   * A credential, or a URL that may hold one: its value is never printed (errors show it redacted,
   * runtime/redact.ts), and `<env>_FILE` names a file to read it from (Docker / Kubernetes secrets).
   */
  readonly secret?: boolean;
}

/**
 * Every setting, declared once: the environment variable that sets it, its zod type with the
 * default, and a description (docs/configuration.md is generated from these: `npm run gen:docs`).
 */
const settings = {
  host: { env: "UMW_HOST", schema: z.string().min(1).default("127.0.0.1"), description: "Address every server binds." },
  logLevel: {
    env: "UMW_LOG_LEVEL",
    schema: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
    description: "pino log level.",
  },
  certsDir: { env: "UMW_CERTS_DIR", schema: z.string().min(1).default(".certs"), description: "Folder of the mesh CA and of one certificate per mesh identity (`umw certs`)." },
  drainTimeoutMs: { env: "UMW_DRAIN_TIMEOUT_MS", schema: z.coerce.number().int().min(0).default(10_000), description: "How long a stopping server lets calls finish before it cancels them." },
  redisUrl: { env: "UMW_REDIS_URL", secret: true, schema: url(["redis:", "rediss:"]).default("redis://127.0.0.1:16379"), description: "Redis (the cache); an ACL user and password go in the URL (`redis://user:password@host:port`). Secret: also `UMW_REDIS_URL_FILE`." },
  pgUrl: { env: "UMW_PG_URL", secret: true, schema: url(["postgres:", "postgresql:"]).default("postgres://umw:umw@127.0.0.1:15432/umw"), description: "Postgres primary (commands, outbox, entities); its user owns the schema and runs `umw migrate`. Secret: also `UMW_PG_URL_FILE`." },
  pgReplicaUrl: {
    env: "UMW_PG_REPLICA_URL",
    secret: true,
    schema: url(["postgres:", "postgresql:"]).default("postgres://umw:umw@127.0.0.1:15433/umw"),
    description: "Postgres streaming replica (reads on a cache miss). Secret: also `UMW_PG_REPLICA_URL_FILE`.",
  },
  kafkaBrokers: {
    env: "UMW_KAFKA_BROKERS",
    schema: z
      .string()
      .default("127.0.0.1:19092")
      .transform((value) => value.split(",").map((broker) => broker.trim()).filter(Boolean))
      .pipe(z.array(z.string().regex(/^[^:\s]+:\d+$/, "must be host:port")).min(1)),
    description: "Kafka brokers, comma-separated host:port.",
  },
  topicPrefix: { env: "UMW_TOPIC_PREFIX", schema: z.string().default(""), description: "Prefix of every Kafka topic and consumer group." },
  topicPartitions: {
    env: "UMW_TOPIC_PARTITIONS",
    schema: z.coerce.number().int().min(1).max(1_000).default(6),
    description: "Partitions of the topics a service creates at start (existing topics are left as they are).",
  },
  cacheKeyPrefix: { env: "UMW_CACHE_KEY_PREFIX", schema: z.string().default(""), description: "Prefix of every Redis key and channel (shared by the query service and the cache updater)." },
  processorMaxAttempts: {
    env: "UMW_PROCESSOR_MAX_ATTEMPTS",
    schema: z.coerce.number().int().min(1).max(100).default(5),
    description: "Attempts at a failing command before it goes to the dead-letter topic (`umw dlq`).",
  },
  processorBatchSize: {
    env: "UMW_PROCESSOR_BATCH_SIZE",
    schema: z.coerce.number().int().min(1).max(5_000).default(200),
    description: "Most waiting commands of one partition the processor applies in one transaction (1: a transaction per command).",
  },
  cacheUpdaterBatchSize: {
    env: "UMW_CACHE_UPDATER_BATCH_SIZE",
    schema: z.coerce.number().int().min(1).max(5_000).default(500),
    description: "Most waiting domain events of one partition the cache updater writes to Redis at once (one pipeline).",
  },
  commandGroupCommit: {
    env: "UMW_COMMAND_GROUP_COMMIT",
    schema: z.coerce.number().int().min(0).max(64).default(1),
    description:
      "Group commit of unconditional accepts: with N > 0, a write arriving while N groups are being committed joins the next group, one statement and one commit for all (`services/command/group-commit.ts`); 0 = one statement per write.",
  },
  idempotencyTtlMs: {
    env: "UMW_IDEMPOTENCY_TTL_MS",
    schema: z.coerce.number().int().min(1_000).default(86_400_000),
    description: "How long a stored Idempotency-Key answer is replayed (published in `idempotency-key-expires`).",
  },
  idempotencySweepMs: { env: "UMW_IDEMPOTENCY_SWEEP_MS", schema: z.coerce.number().int().min(100).default(60_000), description: "How often expired idempotency keys are deleted." },
  commandWatchPollMs: {
    env: "UMW_COMMAND_WATCH_POLL_MS",
    schema: z.coerce.number().int().min(50).default(1_000),
    description: "WatchCommand's polling period while its LISTEN connection is down (otherwise NOTIFY wakes it).",
  },
  trustedPrincipalPeers: {
    env: "UMW_TRUSTED_PRINCIPAL_PEERS",
    schema: z
      .string()
      .default("edge,envoy")
      .transform((value) => value.split(",").map((peer) => peer.trim()).filter(Boolean)),
    description: "mTLS peers (comma-separated) allowed to assert the caller (`x-umw-principal` and the other `x-umw-*` principal headers, `x-umw-connection-id`): the edges. Any other peer sending them is refused (PRINCIPAL_ASSERTION_DENIED).",
  },
  meshAuthz: {
    env: "UMW_MESH_AUTHZ",
    schema: z
      .unknown()
      .transform((value, ctx) => {
        try {
          return parseMeshAuthz(value);
        } catch (error) {
          ctx.addIssue({ code: "custom", message: (error as Error).message });
          return z.NEVER;
        }
      }),
    description: "Which mesh identity may call which method: a YAML/JSON file, or the table inline (starting with `{`), identity → `package.Service/Method` patterns (`Service/*`, `*`), or that mapping in the config file; unset = the built-in table (docs/security.md). Refusals are PERMISSION_DENIED MESH_METHOD_DENIED.",
  },
  relayBatchSize: { env: "UMW_RELAY_BATCH_SIZE", schema: z.coerce.number().int().min(1).default(500), description: "Outbox rows the relay reads per round." },
  relayPollMs: { env: "UMW_RELAY_POLL_MS", schema: z.coerce.number().int().min(10).default(500), description: "The relay's polling fallback when no NOTIFY wakes it." },
  relayLockRetryMs: { env: "UMW_RELAY_LOCK_RETRY_MS", schema: z.coerce.number().int().min(50).default(1_000), description: "How often a standby relay tries to take the leader lock." },
  outboxRetentionMs: { env: "UMW_OUTBOX_RETENTION_MS", schema: z.coerce.number().int().min(0).default(3_600_000), description: "How long published outbox rows are kept before pruning." },
  edgeTimeoutMs: { env: "UMW_EDGE_TIMEOUT_MS", schema: z.coerce.number().int().positive().default(15_000), description: "Deadline of each call the edge makes upstream." },
  edgeMaxBodyBytes: { env: "UMW_EDGE_MAX_BODY_BYTES", schema: z.coerce.number().int().positive().default(1_048_576), description: "Largest request body the edge accepts." },
  payloadMaxDepth: { env: "UMW_PAYLOAD_MAX_DEPTH", schema: z.coerce.number().int().min(1).max(40).default(32), description: "Deepest nesting of an entity payload (`data`; `{}` is 1), checked by the edge and by CommandService. At most 40, so every protobuf decoder on the way (100 nested messages, two per Struct level) can read it." },
  payloadMaxBytes: { env: "UMW_PAYLOAD_MAX_BYTES", schema: z.coerce.number().int().min(1_024).max(900_000).default(262_144), description: "Largest entity payload, measured encoded as google.protobuf.Struct (what travels over gRPC, the outbox and Kafka); checked by the edge and by CommandService." },
  edgeCorsOrigins: {
    env: "UMW_EDGE_CORS_ORIGINS",
    schema: z
      .string()
      .default("")
      .transform((value) => value.split(",").map((origin) => origin.trim()).filter(Boolean)),
    description: "Comma-separated origins allowed by CORS (`https://app.example`, exactly as the browser sends `Origin`). Empty (the default) allows none: browsers on other origins cannot read answers or send non-simple requests. `*` allows any and is logged as a warning.",
  },
  // The Node edge toward its upstreams (services/edge/upstream-resilience.ts; Envoy: control-plane/upstream-resilience.ts).
  edgeRetryAttempts: { env: "UMW_EDGE_RETRY_ATTEMPTS", schema: z.coerce.number().int().min(1).max(10).default(3), description: "Attempts in all of a read (QueryService Get/BatchGet/List, GetCommand) that fails UNAVAILABLE before any response, with jittered exponential backoff, never past the call's deadline; 1 = no retries. Writes and streams are never retried by the edge." },
  edgeRetryInitialDelayMs: { env: "UMW_EDGE_RETRY_INITIAL_DELAY_MS", schema: z.coerce.number().int().positive().default(25), description: "Wait before the edge's first retry of a read; later waits grow exponentially with jitter." },
  edgeRetryMaxDelayMs: { env: "UMW_EDGE_RETRY_MAX_DELAY_MS", schema: z.coerce.number().int().positive().default(250), description: "Longest wait between two attempts of a read at the edge." },
  edgeRetryBudgetRatio: { env: "UMW_EDGE_RETRY_BUDGET_RATIO", schema: z.coerce.number().min(0).max(1).default(0.2), description: "Retry budget per upstream: retries at most this share of its calls over UMW_EDGE_RETRY_BUDGET_WINDOW_MS (plus UMW_EDGE_RETRY_BUDGET_MIN), so retries cannot multiply the load on a failing service." },
  edgeRetryBudgetMin: { env: "UMW_EDGE_RETRY_BUDGET_MIN", schema: count.default(10), description: "Retries per upstream allowed in any budget window however few calls were made." },
  edgeRetryBudgetWindowMs: { env: "UMW_EDGE_RETRY_BUDGET_WINDOW_MS", schema: z.coerce.number().int().positive().default(10_000), description: "Sliding window over which the retry budget counts calls and retries." },
  edgeBreakerFailures: { env: "UMW_EDGE_BREAKER_FAILURES", schema: z.coerce.number().int().positive().default(5), description: "Consecutive calls to an upstream failing UNAVAILABLE (after their retries) that open its circuit breaker: the edge then answers 503 `UPSTREAM_CIRCUIT_OPEN` with Retry-After at once, without calling it." },
  edgeBreakerHalfOpenAfterMs: { env: "UMW_EDGE_BREAKER_HALF_OPEN_AFTER_MS", schema: z.coerce.number().int().positive().default(5_000), description: "How long an upstream's circuit stays open before one call probes it (half-open); success closes the circuit." },
  edgeMaxInFlight: { env: "UMW_EDGE_MAX_IN_FLIGHT", schema: z.coerce.number().int().positive().default(1_000), description: "Unary calls the edge has in flight to one upstream at most; beyond it the edge answers 503 `EDGE_OVERLOADED` with Retry-After instead of queueing." },
  // How the Node edge sends its unary calls upstream (services/edge/upstream.ts, runtime/http2-unary-transport.ts).
  edgeUpstreamClient: {
    env: "UMW_EDGE_UPSTREAM_CLIENT",
    schema: z.enum(["grpc-js", "lean"]).default("lean"),
    description: "Transport of the Node edge's unary calls to its upstreams, under the same interceptors (request id, deadline, retries, circuit breaker, metrics, tracing): `grpc-js` (a grpc-js channel), or `lean` (the default), one node:http2 session per upstream with the same mTLS identity speaking the gRPC wire itself (a quarter less edge CPU per call). Server-streaming calls and health checks use grpc-js either way.",
  },
  // Rate limits and quotas (services/ratelimit; both edges, shared through Redis).
  rateLimitEnabled: {
    env: "UMW_RATE_LIMIT_ENABLED",
    schema: z.preprocess((value) => (typeof value === "boolean" ? String(value) : value), z.stringbool()).default(true),
    description: "Rate limits and quotas at the edges (buckets in Redis, shared by every edge instance and Envoy's rate limit service). Off in the embedded mode, which has no Redis.",
  },
  rateLimitFailureMode: {
    env: "UMW_RATE_LIMIT_FAILURE_MODE",
    schema: z.enum(["open", "closed"]).default("open"),
    description: "What the edges do when the rate limiter's Redis does not answer within UMW_RATE_LIMIT_TIMEOUT_MS: `open` lets requests through (logged), `closed` refuses them with 503 `RATE_LIMITER_UNAVAILABLE`.",
  },
  rateLimitTimeoutMs: { env: "UMW_RATE_LIMIT_TIMEOUT_MS", schema: z.coerce.number().int().positive().default(250), description: "How long a rate-limit check waits for Redis before the failure mode decides." },
  rateLimitPrincipal: { env: "UMW_RATE_LIMIT_PRINCIPAL", schema: bucketRule.default({ rps: 100, burst: 200 }), description: "Default bucket per principal (tenant + subject; the client address until callers authenticate), across routes: `rps/burst`." },
  rateLimitFreshReads: { env: "UMW_RATE_LIMIT_FRESH_READS", schema: bucketRule.default({ rps: 20, burst: 40 }), description: "Extra, stricter bucket per principal for reads that bypass the cache (`min_version`): `rps/burst`." },
  rateLimitTenant: { env: "UMW_RATE_LIMIT_TENANT", schema: bucketRule.default({ rps: 1_000, burst: 2_000 }), description: "Quota per tenant, all its principals together: `rps/burst`." },
  rateLimitRoutes: {
    env: "UMW_RATE_LIMIT_ROUTES",
    schema: bucketRules.default({}),
    description: "Per-route buckets replacing the principal default on that route, by gRPC method: `umw.v1.CommandService/CreateEntity=10/20,umw.v1.QueryService/ListEntities=5/10`.",
  },
  rateLimitTenants: { env: "UMW_RATE_LIMIT_TENANTS", schema: bucketRules.default({}), description: "Per-tenant quotas replacing UMW_RATE_LIMIT_TENANT: `acme=50/100,globex=500/1000`." },
  ratelimitPort: { env: "UMW_RATELIMIT_PORT", schema: port.default(7009), description: "gRPC port of the rate limit service (Envoy's `envoy.service.ratelimit.v3.RateLimitService`, `umw serve ratelimit`)." },
  ratelimitAddress: {
    env: "UMW_RATELIMIT_ADDRESS",
    schema: z.string().regex(/^[^:\s]+:\d+$/, "must be host:port").optional(),
    description: "host:port where Envoy reaches the rate limit service (mTLS, SAN `ratelimit`); set, the control plane and `umw envoy` add Envoy's rate limit filter; unset = Envoy does not rate-limit.",
  },
  maxCallTimeoutMs: { env: "UMW_MAX_CALL_TIMEOUT_MS", schema: z.coerce.number().int().positive().max(2_147_483_647).default(3_600_000), description: "Longest deadline a caller may ask for (Connect-Timeout-Ms, grpc-timeout) at the edge and the mesh servers; longer ones are clamped to it." },
  httpHeadersTimeoutMs: { env: "UMW_HTTP_HEADERS_TIMEOUT_MS", schema: z.coerce.number().int().positive().default(10_000), description: "HTTP/1.1: time to receive a request's headers; the connection is closed (408) past it." },
  httpRequestTimeoutMs: { env: "UMW_HTTP_REQUEST_TIMEOUT_MS", schema: z.coerce.number().int().positive().default(30_000), description: "HTTP/1.1 and HTTP/2: time to receive a whole request (headers and body)." },
  httpIdleTimeoutMs: { env: "UMW_HTTP_IDLE_TIMEOUT_MS", schema: z.coerce.number().int().positive().default(5_000), description: "HTTP/1.1: how long a kept-alive connection may wait idle for its next request." },
  http2SessionTimeoutMs: { env: "UMW_HTTP2_SESSION_TIMEOUT_MS", schema: z.coerce.number().int().positive().default(120_000), description: "HTTP/2 (h2c): a session with no frame in either direction for this long is closed (also a preface-only connection)." },
  grpcMaxConnectionIdleMs: { env: "UMW_GRPC_MAX_CONNECTION_IDLE_MS", schema: z.coerce.number().int().positive().default(300_000), description: "Mesh gRPC servers: a connection without calls for this long gets GOAWAY." },
  grpcMaxConnectionAgeMs: { env: "UMW_GRPC_MAX_CONNECTION_AGE_MS", schema: z.coerce.number().int().min(0).default(0), description: "Mesh gRPC servers: a connection older than this gets GOAWAY (clients reconnect; spreads load); 0 = no limit, so long streams are not cut." },
  grpcMaxConnectionAgeGraceMs: { env: "UMW_GRPC_MAX_CONNECTION_AGE_GRACE_MS", schema: z.coerce.number().int().positive().default(60_000), description: "Mesh gRPC servers: how long calls may finish on a connection past its age before it is closed." },
  grpcKeepaliveTimeMs: { env: "UMW_GRPC_KEEPALIVE_TIME_MS", schema: z.coerce.number().int().positive().default(60_000), description: "Mesh gRPC servers: keepalive ping interval." },
  grpcKeepaliveTimeoutMs: { env: "UMW_GRPC_KEEPALIVE_TIMEOUT_MS", schema: z.coerce.number().int().positive().default(20_000), description: "Mesh gRPC servers: how long a keepalive ping may go unanswered before the connection is closed." },
  controlPlanePort: { env: "UMW_CONTROL_PLANE_PORT", schema: port.default(7007), description: "The xDS control plane's port (`umw control-plane`)." },
  controlPlaneAddress: { env: "UMW_CONTROL_PLANE_ADDRESS", schema: z.string().regex(/^[^:\s]+:\d+$/, "must be host:port").optional(), description: "host:port of the xDS control plane that query, command and realtime instances register with; unset = they do not register." },
  edgeH2cPort: { env: "UMW_EDGE_H2C_PORT", schema: port.optional(), description: "Optional cleartext HTTP/2 port of the edge (gRPC and h2 clients); unset = none." },
  edgeTlsPort: { env: "UMW_EDGE_TLS_PORT", schema: port.optional(), description: "TLS port of the edge next to plain HTTP (ALPN h2 and http/1.1, so browsers get HTTP/2): the Node edge's HTTPS listener and Envoy's second listener. Needs UMW_EDGE_TLS_CERT and UMW_EDGE_TLS_KEY; unset = none." },
  edgeTlsCert: { env: "UMW_EDGE_TLS_CERT", schema: z.string().min(1).optional(), description: "PEM certificate chain of the edge's TLS listener (for Envoy: a path on Envoy's machine)." },
  edgeTlsKey: { env: "UMW_EDGE_TLS_KEY", schema: z.string().min(1).optional(), description: "PEM private key of the edge's TLS listener (for Envoy: a path on Envoy's machine)." },
  queryPort: { env: "UMW_QUERY_PORT", schema: port.default(7001), description: "gRPC port of the query service." },
  commandPort: { env: "UMW_COMMAND_PORT", schema: port.default(7002), description: "gRPC port of the command service." },
  realtimePort: { env: "UMW_REALTIME_PORT", schema: port.default(7003), description: "gRPC port of the realtime hub." },
  relayPort: { env: "UMW_RELAY_PORT", schema: port.default(7004), description: "Health port of the outbox relay." },
  processorPort: { env: "UMW_PROCESSOR_PORT", schema: port.default(7005), description: "Health port of the processor." },
  cacheUpdaterPort: { env: "UMW_CACHE_UPDATER_PORT", schema: port.default(7006), description: "Health port of the cache updater." },
  edgePort: { env: "UMW_EDGE_PORT", schema: port.default(8080), description: "Public HTTP port of the Node edge (REST, Connect, gRPC-web, `/healthz`, `/readyz`)." },
  metricsHost: {
    env: "UMW_METRICS_HOST",
    schema: z.string().min(1).default("127.0.0.1"),
    description: "Address of the metrics listener (`/metrics`); loopback by default, a mesh-internal address in a deployment, never the public one.",
  },
  metricsPort: {
    env: "UMW_METRICS_PORT",
    schema: port.default(9464),
    description: "Base port of the metrics listener: a process serving several services (`serve all`) listens here, one serving a single service here plus its offset (query 0, command 1, realtime 2, relay 3, processor 4, cache-updater 5, edge 6, canary 7); 0 = a free port.",
  },
  metricsTls: {
    env: "UMW_METRICS_TLS",
    schema: z.preprocess((value) => (typeof value === "boolean" ? String(value) : value), z.stringbool()).default(false),
    description: "Serve `/metrics` over mTLS: HTTPS with the process's mesh certificate, only for clients with a certificate of the mesh CA (Prometheus: `scheme: https` and a mesh certificate; `umw status` uses `cli`).",
  },
  metricsTenantLabels: {
    env: "UMW_METRICS_TENANT_LABELS",
    schema: z
      .string()
      .default("")
      .transform((value) => value.split(",").map((tenant) => tenant.trim()).filter(Boolean))
      .pipe(z.array(z.string()).max(100, "at most 100 tenants")),
    description: "Comma-separated tenants that get their own `tenant` label in metrics (at most 100); every other tenant is counted as `_other`. Empty (default) = no tenant names in metrics.",
  },
  canaryIntervalMs: { env: "UMW_CANARY_INTERVAL_MS", schema: z.coerce.number().int().positive().default(10_000), description: "`umw canary` / `serve canary`: pause between two end-to-end transactions." },
  canaryTimeoutMs: { env: "UMW_CANARY_TIMEOUT_MS", schema: z.coerce.number().int().positive().default(10_000), description: "`umw canary`: how long one transaction may take (write, applied, read back, received) before it counts as failed." },
  canaryTenant: { env: "UMW_CANARY_TENANT", schema: z.string().min(1).default("umw-canary"), description: "Tenant the canary writes in (keep it apart from real tenants)." },
  canaryType: { env: "UMW_CANARY_TYPE", schema: z.string().min(1).default("todo"), description: "Resource type the canary creates and updates (must be configured in UMW_RESOURCES and accept `{\"title\": string}`)." },
  canaryToken: { env: "UMW_CANARY_TOKEN", schema: z.string().min(1).optional(), description: "Bearer token the canary sends as `authorization` on every call (for a mesh that authenticates users); unset = it calls as its mTLS mesh identity `canary` only." },
  queryAddress: { env: "UMW_QUERY_ADDRESS", schema: z.string().optional(), description: "host:port where the other services reach the query service; unset = host + queryPort." },
  commandAddress: { env: "UMW_COMMAND_ADDRESS", schema: z.string().optional(), description: "host:port where the other services reach the command service; unset = host + commandPort." },
  realtimeAddress: { env: "UMW_REALTIME_ADDRESS", schema: z.string().optional(), description: "host:port where the other services reach the realtime hub; unset = host + realtimePort." },
  authorization: {
    env: "UMW_AUTHORIZATION",
    schema: z.enum(["opa", "off"]).default("opa"),
    description: "`opa`: every mesh server asks the authorization policy (policy/authz.rego, compiled to wasm) before each call and each subscription; `off`: no policy in the mesh servers (the services' own tenant checks stay).",
  },
  policyWasm: { env: "UMW_POLICY_WASM", schema: z.string().default(""), description: "Path of a compiled policy (`scripts/policy.sh build OUT`, entrypoint umw/authz/decision); empty = the committed policy/authz.wasm." },
  policyPort: { env: "UMW_POLICY_PORT", schema: port.default(7008), description: "gRPC port of the policy service: Envoy's ext_authz (envoy.service.auth.v3.Authorization/Check)." },
  embedded: {
    env: "UMW_EMBEDDED",
    schema: z.preprocess((value) => (typeof value === "boolean" ? String(value) : value), z.stringbool()).default(false),
    description: "Run on the embedded adapters (PGlite, in-process bus, in-memory cache) instead of Postgres, Kafka and Redis; also `umw serve --embedded`.",
  },
  embeddedDataDir: { env: "UMW_EMBEDDED_DATA_DIR", schema: z.string().min(1).optional(), description: "PGlite's folder in embedded mode; unset = in memory, gone when the process ends." },
  inProcessTransport: {
    env: "UMW_IN_PROCESS_TRANSPORT",
    schema: z.preprocess((value) => (typeof value === "boolean" ? String(value) : value), z.stringbool()).default(true),
    description:
      "When a caller and the service it calls run in one process (`umw serve all`, `npm start`), unary calls go in process: the client and server interceptor chains (request id, deadline, mesh authorization as the caller's identity, policy, metrics, errors) and the handler, without HTTP/2, TLS or protobuf encoding (`umw_in_process_calls_total`). Streams, and services in other processes, stay on gRPC over mTLS. `false`: every call over gRPC.",
  },
  queryL1MaxEntries: {
    env: "UMW_QUERY_L1_MAX_ENTRIES",
    schema: z.coerce.number().int().min(1).default(10_000),
    description:
      "Keys a QueryService instance keeps in its in-process L1 (types with `cache.l1Ms` > 0), deleted entities' versions included; the least recently stored goes first. The L1 follows the domain events (a consumer group per instance), so a change replaces the local copy when its event arrives; `cache.l1Ms` bounds the age of a copy if events stop.",
  },
  realtimeHistoryPerPartition: {
    env: "UMW_REALTIME_HISTORY_PER_PARTITION",
    schema: count.default(10_000),
    description: "Events the hub keeps per partition for resume; a resume older than that gets a reset and a fresh snapshot.",
  },
  realtimeSnapshotLimit: {
    env: "UMW_REALTIME_SNAPSHOT_LIMIT",
    schema: count.default(1_000),
    description: "Most entities a type snapshot carries (ordered by id); `x-umw-snapshot-truncated: true` says when more exist.",
  },
  realtimeMaxTopicsPerStream: { env: "UMW_REALTIME_MAX_TOPICS_PER_STREAM", schema: count.default(100), description: "Topics one Subscribe may name." },
  realtimeSlowAfterMs: {
    env: "UMW_REALTIME_SLOW_AFTER_MS",
    schema: count.default(100),
    description: "A message waiting this long for the client to take it marks the stream slow: pending changes then conflate.",
  },
  realtimeMaxQueuedEvents: {
    env: "UMW_REALTIME_MAX_QUEUED_EVENTS",
    schema: count.default(1_024),
    description: "Pending events of one stream past which changes conflate even before the slow delay (e.g. a burst during a snapshot read).",
  },
  realtimeMaxPendingEntities: {
    env: "UMW_REALTIME_MAX_PENDING_ENTITIES",
    schema: count.default(1_000),
    description: "Distinct entities pending for one stream past which it ends with RESOURCE_EXHAUSTED / SLOW_CONSUMER.",
  },
  realtimeMaxStuckMs: {
    env: "UMW_REALTIME_MAX_STUCK_MS",
    schema: count.default(30_000),
    description: "How long a stream may hold pending changes without the client taking any before it ends with SLOW_CONSUMER.",
  },
  realtimeHeartbeatMs: { env: "UMW_REALTIME_HEARTBEAT_MS", schema: count.default(15_000), description: "An idle stream gets a Heartbeat after this long without a message." },
  realtimeSweepIntervalMs: { env: "UMW_REALTIME_SWEEP_INTERVAL_MS", schema: count.default(1_000), description: "Period of the hub's sweep (heartbeats, stuck streams)." },
  realtimeMaxStreamsPerConnection: {
    env: "UMW_REALTIME_MAX_STREAMS_PER_CONNECTION",
    schema: count.default(10_000),
    description: "Open streams per client connection (`x-umw-connection-id` from the edge) or, without it, per mTLS peer.",
  },
  realtimeMaxStreamsPerTenant: { env: "UMW_REALTIME_MAX_STREAMS_PER_TENANT", schema: count.default(10_000), description: "Open streams per tenant on one hub." },
  realtimeDedupWindow: { env: "UMW_REALTIME_DEDUP_WINDOW", schema: count.default(100_000), description: "Message ids the hub remembers to drop re-sent duplicates." },
  realtimeCommandCatchUpMs: {
    env: "UMW_REALTIME_COMMAND_CATCH_UP_MS",
    schema: count.default(300_000),
    description: "With a snapshot or reset, own-command statuses updated this recently are sent as a catch-up.",
  },
  realtimeCommandCatchUpLimit: { env: "UMW_REALTIME_COMMAND_CATCH_UP_LIMIT", schema: count.default(100), description: "Most command statuses in that catch-up." },
  otlpEndpoint: {
    env: "UMW_OTLP_ENDPOINT",
    schema: z.union([z.literal(""), url(["http:", "https:"])]).default(""),
    description: "OpenTelemetry collector (OTLP over gRPC, e.g. `http://127.0.0.1:14317`) that every service sends its spans to; empty = tracing off.",
  },
  traceSampleRatio: {
    env: "UMW_TRACE_SAMPLE_RATIO",
    schema: z.coerce.number().min(0).max(1).default(1),
    description: "Share of new traces recorded (0 to 1); parent-based: a call that arrives with a sampled `traceparent` is always recorded, an unsampled one never.",
  },
  serviceName: {
    env: "UMW_SERVICE_NAME",
    schema: z.string().default(""),
    description: "OpenTelemetry `service.name` of the process; empty = `umw-<service>` when it serves one service, `umw` when several.",
  },
  // Authentication at the edges (docs/security.md).
  authMode: {
    env: "UMW_AUTH_MODE",
    schema: z.enum(["oidc", "dev", "none"]).default("dev"),
    description: "How the edges authenticate callers: `oidc` verifies bearer JWTs from UMW_AUTH_ISSUER; `dev` runs the built-in dev issuer (keys in UMW_AUTH_DEV_KEYS_DIR, tokens from `umw token`) and verifies its tokens; `none` lets every call in unauthenticated and logs a warning at every start.",
  },
  authIssuer: { env: "UMW_AUTH_ISSUER", schema: z.string().min(1).optional(), description: "The OIDC issuer (`iss`, and where `/.well-known/openid-configuration` is found). Required with `oidc`; with `dev`, default `http://<host>:<edge port>` (the dev issuer the Node edge serves)." },
  authAudience: { env: "UMW_AUTH_AUDIENCE", schema: z.string().min(1).default("umw"), description: "The audience (`aud`) a token must name." },
  authJwksUrl: { env: "UMW_AUTH_JWKS_URL", schema: url(["http:", "https:"]).optional(), description: "The issuer's JWKS; unset = the `jwks_uri` of the issuer's discovery document." },
  authAlgorithms: {
    env: "UMW_AUTH_ALGORITHMS",
    schema: z
      .string()
      .default("RS256,ES256,PS256,EdDSA")
      .transform((value) => value.split(",").map((alg) => alg.trim()).filter(Boolean))
      .pipe(z.array(z.string().regex(/^(RS|PS|ES)(256|384|512)$|^EdDSA$/, "an asymmetric JWS algorithm (`none` and HMAC are never accepted)")).min(1)),
    description: "JWS algorithms a token may be signed with (comma-separated; asymmetric only).",
  },
  authClockSkewS: { env: "UMW_AUTH_CLOCK_SKEW_S", schema: z.coerce.number().int().min(0).max(300).default(30), description: "Clock skew tolerated on `exp` and `nbf`, seconds." },
  authTenantClaim: { env: "UMW_AUTH_TENANT_CLAIM", schema: z.string().min(1).default("tenant"), description: "The claim naming the caller's tenant (a dotted path reaches into objects)." },
  authSubjectClaim: { env: "UMW_AUTH_SUBJECT_CLAIM", schema: z.string().min(1).default("sub"), description: "The claim naming the caller (idempotency keys and stream limits are per subject)." },
  authScopeClaim: { env: "UMW_AUTH_SCOPE_CLAIM", schema: z.string().min(1).default("scope"), description: "The claim with the caller's scopes (a space-separated string or an array)." },
  authRolesClaim: { env: "UMW_AUTH_ROLES_CLAIM", schema: z.string().min(1).default("roles"), description: "The claim with the caller's roles (a space-separated string or an array)." },
  authRealm: { env: "UMW_AUTH_REALM", schema: z.string().min(1).default("umw"), description: "The realm named in `WWW-Authenticate` on a 401." },
  authCacheEntries: { env: "UMW_AUTH_CACHE_ENTRIES", schema: z.coerce.number().int().min(0).default(10_000), description: "Verified tokens the Node edge remembers (by SHA-256, each until its `exp`) so it does not verify them again; 0 = verify every request." },
  authJwksCacheS: { env: "UMW_AUTH_JWKS_CACHE_S", schema: z.coerce.number().int().min(1).default(600), description: "How long a fetched JWKS is used before it is fetched again (an unknown `kid` fetches at once, at most every 30 s)." },
  authDevKeysDir: { env: "UMW_AUTH_DEV_KEYS_DIR", schema: z.string().min(1).default(".data/dev-issuer"), description: "Folder of the dev issuer's signing key (made at first start with `dev`; `umw token` signs with it)." },
  // Store credentials (docs/security.md, "Hardening and store credentials").
  pgRolePasswordsDir: {
    env: "UMW_PG_ROLE_PASSWORDS_DIR",
    schema: z.string().min(1).optional(),
    description: "Folder with one file per service role (`umw_command`, `umw_processor`, `umw_relay`, `umw_query`, `umw_realtime`) holding its Postgres password: each service then connects to the primary and the replica as its own least-privilege role instead of UMW_PG_URL's user. Unset = every service uses the URLs' user.",
  },
  kafkaSaslMechanism: {
    env: "UMW_KAFKA_SASL_MECHANISM",
    schema: z.enum(["none", "plain", "scram-sha-256", "scram-sha-512"]).default("none"),
    description: "SASL mechanism of every Kafka connection (`none` = plaintext without authentication); `scram-sha-256` is what `scripts/infra.sh` runs.",
  },
  kafkaSaslUsername: { env: "UMW_KAFKA_SASL_USERNAME", schema: z.string().min(1).optional(), description: "Kafka SASL user; required with a mechanism." },
  kafkaSaslPassword: { env: "UMW_KAFKA_SASL_PASSWORD", secret: true, schema: z.string().min(1).optional(), description: "Kafka SASL password; required with a mechanism. Secret: also `UMW_KAFKA_SASL_PASSWORD_FILE`." },
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
    description: "Resource types by name: backend, cache policy, JSON Schema (`config/demo.yaml` has examples). JSON in the variable, a mapping in the file.",
  },
} satisfies Record<string, Setting>;

type Settings = typeof settings;
export type Config = { [K in keyof Settings]: z.output<Settings[K]["schema"]> };

/** The environment variable of every setting, for docs and for docker-compose checks. */
export const CONFIG_ENV: Readonly<Record<keyof Config, string>> = Object.fromEntries(
  Object.entries(settings).map(([key, setting]) => [key, setting.env]),
) as Record<keyof Config, string>;

/** One row of the configuration reference (docs/configuration.md). */
export interface SettingDoc {
  readonly key: keyof Config;
  readonly env: string;
  /** The default as the schema produces it; undefined = unset. */
  readonly defaultValue: unknown;
  readonly description: string;
}

/** Every setting in declaration order, with its default: what `npm run gen:docs` renders. */
export function describeSettings(): SettingDoc[] {
  const defaults = configDefaults();
  return Object.entries(settings).map(([key, setting]) => ({
    key: key as keyof Config,
    env: setting.env,
    defaultValue: defaults[key as keyof Config],
    description: setting.description,
  }));
}

let defaults: Config | undefined;

/** The config with nothing set: every default, taken from the schema. */
export function configDefaults(): Config {
  defaults ??= loadConfig({});
  return defaults;
}

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
  for (const [key, setting] of Object.entries(settings) as [string, Setting][]) {
    let fromEnv = env[setting.env];
    let source = setting.env;
    const secretFile = setting.secret ? env[`${setting.env}_FILE`] : undefined;
    if ((fromEnv === undefined || fromEnv === "") && secretFile) {
      try {
        fromEnv = readFileSync(secretFile, "utf8").replace(/\r?\n$/, "");
        source = `${setting.env}_FILE=${secretFile}`;
      } catch (error) {
        problems.push(`${setting.env}_FILE=${secretFile}: cannot read the file (${(error as Error).message})`);
        continue;
      }
    }
    const raw = fromEnv !== undefined && fromEnv !== "" ? fromEnv : file[key];
    if (setting.secret && typeof raw === "string") {
      // A URL's password, or the whole value when it is not a URL (a password; a URL too broken to parse).
      if (URL.canParse(raw)) registerUrlSecret(raw);
      else registerSecret(raw);
    }
    const result = setting.schema.safeParse(raw);
    if (result.success) {
      config[key] = result.data;
    } else {
      const shown = (value: unknown) => (setting.secret ? JSON.stringify(typeof value === "string" && URL.canParse(value) ? redactUrl(value) : "***") : JSON.stringify(value));
      const where = fromEnv ? `${source === setting.env ? `${setting.env}=${shown(fromEnv)}` : source}` : `${key}=${shown(raw)} in ${env.UMW_CONFIG}`;
      problems.push(`${where}: ${result.error.issues.map((issue) => (issue.path.length ? `${issue.path.join(".")}: ` : "") + issue.message).join("; ")}`);
    }
  }
  if (problems.length) throw new ConfigError(redactText(`invalid configuration:\n  ${problems.join("\n  ")}`));
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
