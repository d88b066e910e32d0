// npm run bench:tracing-cost — what tracing costs per call, in CPU time, in one process: an HTTP
// server (the edge's shape: HTTP in, a gRPC call out) in front of a mesh server (runtime/server.ts)
// whose handler reads one entry through the query service's Redis cache (a cache hit), loaded by a keep-alive HTTP client and,
// separately, by direct gRPC calls. CPU time per request (process.cpuUsage over the requests done)
// is far less sensitive to a busy machine than req/s, and every variant runs in a process of its own
// (instrumentations patch prototypes for good), one after the other.
//
// Variants (BENCH_COST_VARIANTS, comma-separated; default all of them):
//   off                      no SDK
//   sdk@R                    NodeSDK with its AsyncLocalStorage context manager, no instrumentation, sampling R
//   grpc@R, http@R, ioredis@R  NodeSDK plus that one instrumentation (how tracing was wired before the interceptors)
//   old@R                    NodeSDK plus instrumentation-http, -grpc, -ioredis, -pg (the previous runtime/telemetry.ts)
//   new@R                    runtime/telemetry.ts as it is (tracing interceptors, instrumentation-ioredis/-pg)
// Knobs: BENCH_COST_S (4 s per leg), BENCH_COST_WARMUP_S (2), BENCH_COST_CONCURRENCY (32),
// BENCH_COST_ROUNDS (3: every variant once per round, the least CPU per request of its rounds counts),
// BENCH_CPU_PROF=dir (a V8 CPU profile of each variant's process, and the share of its CPU time spent
// in each part of OpenTelemetry: the instrumentations, the context manager, spans and export),
// BENCH_OTLP_ENDPOINT (Jaeger's http://127.0.0.1:14317). Needs Redis (UMW_REDIS_URL, scripts/infra-env.sh).
import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const env = (name: string, fallback: number) => (process.env[name] ? Number(process.env[name]) : fallback);
const SECONDS = env("BENCH_COST_S", 4);
const WARMUP_S = env("BENCH_COST_WARMUP_S", 2);
const CONCURRENCY = env("BENCH_COST_CONCURRENCY", 32);
const ROUNDS = env("BENCH_COST_ROUNDS", 3);
const CPU_PROF = process.env.BENCH_CPU_PROF;
const OTLP = process.env.BENCH_OTLP_ENDPOINT ?? "http://127.0.0.1:14317";
const ALL = ["off", "sdk@0.1", "http@0.1", "grpc@0.1", "ioredis@0.1", "old@0.1", "old@1", "new@0", "new@0.1", "new@1"];

interface LegResult {
  readonly requests: number;
  readonly cpuUsPerRequest: number;
  readonly rps: number;
}

async function startVariant(variant: string): Promise<void> {
  if (variant === "off") return;
  const [kind, ratioText] = variant.split("@");
  const ratio = Number(ratioText ?? "1");
  if (kind === "new") {
    const { startTelemetry } = await import("../runtime/telemetry.js");
    startTelemetry({ otlpEndpoint: OTLP, traceSampleRatio: ratio }, "umw-bench-tracing-cost");
    return;
  }
  const { NodeSDK, resources, tracing } = await import("@opentelemetry/sdk-node");
  const { OTLPTraceExporter } = await import("@opentelemetry/exporter-trace-otlp-grpc");
  const instrumentations = [];
  if (kind === "http" || kind === "old") {
    const { HttpInstrumentation } = await import("@opentelemetry/instrumentation-http");
    instrumentations.push(new HttpInstrumentation());
  }
  if (kind === "grpc" || kind === "old") {
    const { GrpcInstrumentation } = await import("@opentelemetry/instrumentation-grpc");
    instrumentations.push(new GrpcInstrumentation());
  }
  if (kind === "ioredis" || kind === "old") {
    const { IORedisInstrumentation } = await import("@opentelemetry/instrumentation-ioredis");
    instrumentations.push(new IORedisInstrumentation({ requireParentSpan: true }));
  }
  if (kind === "old") {
    const { PgInstrumentation } = await import("@opentelemetry/instrumentation-pg");
    instrumentations.push(new PgInstrumentation({ requireParentSpan: true }));
  }
  new NodeSDK({
    resource: resources.resourceFromAttributes({ "service.name": "umw-bench-tracing-cost" }),
    traceExporter: new OTLPTraceExporter({ url: OTLP }),
    sampler: new tracing.ParentBasedSampler({ root: new tracing.TraceIdRatioBasedSampler(ratio) }),
    instrumentations,
    metricReaders: [],
    logRecordProcessors: [],
  }).start();
  const require = createRequire(import.meta.url);
  for (const name of ["http", "@grpc/grpc-js", "ioredis", "pg"]) require(name);
}

/** One variant, in this process: prints a JSON line of its legs. */
async function measureVariant(variant: string): Promise<void> {
  await startVariant(variant);
  // Loaded after the SDK, as `umw serve` does.
  const http = await import("node:http");
  const { credentials, Metadata, ServerCredentials } = await import("@grpc/grpc-js");
  const { pino } = await import("pino");
  const { RedisCache } = await import("../runtime/cache/redis-cache.js");
  const { entityEntry } = await import("../runtime/cache/entry.js");
  const { cacheKey } = await import("../runtime/cache/keys.js");
  const { EntitySchema } = await import("../gen/umw/v1/entity_pb.js");
  const { QueryService, GetEntityResponseSchema } = await import("../gen/umw/v1/query_pb.js");
  const { create } = await import("@bufbuild/protobuf");
  const { MeshServer } = await import("../runtime/server.js");
  const { ServiceClient } = await import("../runtime/client.js");
  const { traceHttpRequest } = await import("../services/edge/http-tracing.js");

  const log = pino({ level: "silent" });
  // The query service's cache (runtime/cache/redis-cache.ts): its GET is what a cache hit traces.
  const cache = await RedisCache.connect({ url: process.env.UMW_REDIS_URL ?? "redis://127.0.0.1:16379", log });
  const key = cacheKey(`bench-tracing-cost:${process.pid}:`, "bench", "item", "e1");
  const entity = create(EntitySchema, { tenant: "bench", type: "item", id: "e1", version: 1n, data: { text: "x".repeat(200) } });
  await cache.set(key, entityEntry(entity, { now: Date.now(), ttlMs: 600_000, graceMs: 0, loadMs: 1 }), 600_000);
  const server = new MeshServer({ name: "query", host: "127.0.0.1", port: 0, credentials: ServerCredentials.createInsecure(), log });
  const response = create(GetEntityResponseSchema, {});
  const handlers: Record<string, unknown> = {};
  for (const method of QueryService.methods) {
    handlers[method.localName] =
      method.methodKind === "server_streaming"
        ? async function* () {}
        : async () => {
            if (!(await cache.get(key))) throw new Error("the bench entry is gone");
            return response;
          };
  }
  server.addService(QueryService, handlers as never);
  const port = await server.start();
  const client = new ServiceClient(QueryService, `127.0.0.1:${port}`, credentials.createInsecure(), { forwardMetadata: [] });
  const getEntity = QueryService.method.getEntity;
  const request = { tenant: "bench", type: "item", id: "e1" };

  const edge = http.createServer((req, res) => {
    const handle = () => {
      const metadata = new Metadata();
      const traceparent = req.headers.traceparent;
      if (typeof traceparent === "string") metadata.set("traceparent", traceparent);
      client.unary(getEntity, request, { headers: metadata, timeoutMs: 5_000 }).then(
        () => res.end('{"entity":{}}'),
        () => {
          res.statusCode = 502;
          res.end();
        },
      );
    };
    if (variant.startsWith("new")) traceHttpRequest(req, res, () => "/v1/entities/{id}", handle);
    else handle();
  });
  await new Promise<void>((resolve) => edge.listen(0, "127.0.0.1", resolve));
  const edgePort = (edge.address() as { port: number }).port;
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });

  const httpGet = () =>
    new Promise<void>((resolve, reject) => {
      http
        .get({ host: "127.0.0.1", port: edgePort, path: "/v1/entities/e1", agent }, (res) => {
          res.resume();
          res.on("end", () => (res.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`))));
        })
        .on("error", reject);
    });
  const grpcGet = () => client.unary(getEntity, request, { timeoutMs: 5_000 }).then(() => undefined);

  const leg = async (call: () => Promise<void>): Promise<LegResult> => {
    const run = async (seconds: number) => {
      let requests = 0;
      const until = performance.now() + seconds * 1000;
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          while (performance.now() < until) {
            await call();
            requests++;
          }
        }),
      );
      return requests;
    };
    await run(WARMUP_S);
    const cpu = process.cpuUsage();
    const started = performance.now();
    const requests = await run(SECONDS);
    const used = process.cpuUsage(cpu);
    const seconds = (performance.now() - started) / 1000;
    return { requests, cpuUsPerRequest: Math.round(((used.user + used.system) / requests) * 10) / 10, rps: Math.round(requests / seconds) };
  };

  const httpLeg = await leg(httpGet);
  const grpcLeg = await leg(grpcGet);
  console.log(JSON.stringify({ variant, http: httpLeg, grpc: grpcLeg, load1: Math.round(os.loadavg()[0]! * 100) / 100 }));
  agent.destroy();
  edge.close();
  client.close();
  await server.stop();
  await cache.redis.del(key.entry);
  await cache.close();
  process.exit(0);
}

interface VariantResult {
  readonly variant: string;
  readonly http: LegResult;
  readonly grpc: LegResult;
  readonly load1: number;
}

function runVariant(variant: string, round: number): VariantResult {
  const profileDir = CPU_PROF ? join(CPU_PROF, `${variant}-${round}`) : undefined;
  if (profileDir) {
    rmSync(profileDir, { recursive: true, force: true });
    mkdirSync(profileDir, { recursive: true });
  }
  const run = spawnSync(process.execPath, [...(profileDir ? ["--cpu-prof", "--cpu-prof-dir", profileDir] : []), "--import", "tsx", fileURLToPath(import.meta.url)], {
    env: { ...process.env, BENCH_COST_VARIANT: variant },
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  });
  const line = run.stdout.split("\n").find((text) => text.startsWith("{"));
  if (run.status !== 0 || !line) throw new Error(`variant ${variant} exited with ${run.status ?? run.signal}: ${run.stdout}`);
  const result = JSON.parse(line) as VariantResult;
  console.log(`round ${round + 1} ${variant}: http ${result.http.cpuUsPerRequest} µs/req, grpc ${result.grpc.cpuUsPerRequest} µs/req (load ${result.load1})`);
  if (profileDir) console.log(`  ${profileSplit(profileDir)}`);
  return result;
}

/** Where OpenTelemetry's share of a profile goes: self time by package, as % of the process's CPU samples. */
const PROFILE_PARTS: readonly (readonly [string, RegExp])[] = [
  ["instrumentation-http", /instrumentation-http/],
  ["instrumentation-grpc", /instrumentation-grpc/],
  ["instrumentation-ioredis", /instrumentation-ioredis|redis-common/],
  ["instrumentation-pg", /instrumentation-pg/],
  ["instrumentation (shared)", /@opentelemetry\/instrumentation\/|require-in-the-middle|shimmer/],
  ["context manager", /context-async-hooks|node:async_hooks|internal\/async_local_storage|internal\/async_hooks/],
  ["spans, sampling, export", /sdk-trace|@opentelemetry\/core|@opentelemetry\/resources|exporter|otlp|@grpc\/grpc-js.*(?:otlp)|semantic-conventions/],
  ["api", /@opentelemetry\/api\//],
  ["umw tracing", /interceptor-tracing|http-tracing|message-tracing/],
];

function profileSplit(dir: string): string {
  const file = readdirSync(dir).find((name) => name.endsWith(".cpuprofile"));
  if (!file) return "no profile";
  const profile = JSON.parse(readFileSync(join(dir, file), "utf8")) as { nodes: { id: number; hitCount?: number; callFrame: { url: string; functionName: string } }[] };
  let total = 0;
  const parts = new Map<string, number>();
  for (const node of profile.nodes) {
    const hits = node.hitCount ?? 0;
    if (node.callFrame.functionName === "(idle)" || node.callFrame.functionName === "(program)") continue;
    total += hits;
    const part = PROFILE_PARTS.find(([, match]) => match.test(node.callFrame.url))?.[0];
    if (part) parts.set(part, (parts.get(part) ?? 0) + hits);
  }
  return [...parts].map(([part, hits]) => `${part} ${((hits / total) * 100).toFixed(1)}%`).join(", ") || "nothing of OpenTelemetry";
}

function main(): void {
  const variants = (process.env.BENCH_COST_VARIANTS ?? ALL.join(",")).split(",").map((variant) => variant.trim()).filter(Boolean);
  const best = new Map<string, VariantResult>();
  for (let round = 0; round < ROUNDS; round++) {
    for (const variant of variants) {
      const result = runVariant(variant, round);
      const known = best.get(variant);
      best.set(variant, {
        variant,
        http: !known || result.http.cpuUsPerRequest < known.http.cpuUsPerRequest ? result.http : known.http,
        grpc: !known || result.grpc.cpuUsPerRequest < known.grpc.cpuUsPerRequest ? result.grpc : known.grpc,
        load1: Math.max(result.load1, known?.load1 ?? 0),
      });
    }
  }
  const baseline = best.get("off");
  const extra = (value: number, base: number | undefined) => (base === undefined ? "" : ` (+${Math.round((value - base) * 10) / 10})`);
  const rows = [...best.values()].map((result) => ({
    variant: result.variant,
    "http µs/req": `${result.http.cpuUsPerRequest}${extra(result.http.cpuUsPerRequest, baseline?.http.cpuUsPerRequest)}`,
    "http req/s": result.http.rps,
    "grpc µs/req": `${result.grpc.cpuUsPerRequest}${extra(result.grpc.cpuUsPerRequest, baseline?.grpc.cpuUsPerRequest)}`,
    "grpc req/s": result.grpc.rps,
    "max load1": result.load1,
  }));
  console.log(`\nCPU time per request (least of ${ROUNDS} rounds), HTTP → gRPC → Redis GET and direct gRPC → Redis GET, in one process (+ the difference to off)`);
  console.table(rows);
}

const variant = process.env.BENCH_COST_VARIANT;
if (variant) await measureVariant(variant);
else main();
