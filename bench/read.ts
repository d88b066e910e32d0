// npm run bench:read — the read path's throughput against floors measured in the same run, and the
// cache's hit ratio under Zipf(1.1) traffic from cold. Everything on loopback, h2load as the load
// generator (a Node client would saturate first), each server in a process of its own.
// Writes bench/results/read.json. Bounded: about 2.5 minutes, hard stop at BENCH_MAX_S (default 240 s).
//
// Knobs (environment): BENCH_DURATION_S (5 per h2load run), BENCH_JIT_WARMUP_S (3), BENCH_WARMUP_S (1), BENCH_H1_CLIENTS (64),
// BENCH_H2_CLIENTS (4), BENCH_H2_STREAMS (32), BENCH_ZIPF_READS (300000), BENCH_ZIPF_MAX_S (60),
// BENCH_CPU_PROF=dir (V8 CPU profiles of every server process), BENCH_EDGE_CHANNEL_OPTIONS (JSON),
// BENCH_COLOCATED_L1_MS (0: the colocated leg without L1), BENCH_TRACING (off; a sampling ratio, or several variants compared in one run: off,0.1,1 — see
// bench/lib/tracing.ts).
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { create, toBinary } from "@bufbuild/protobuf";
import { credentials as grpcCredentials, Client, Metadata, type ChannelCredentials } from "@grpc/grpc-js";
import { Redis } from "ioredis";
import { GetEntityRequestSchema } from "../gen/umw/v1/query_pb.js";
import { RpcError } from "../runtime/errors.js";
import { clientCredentials, loadIdentity } from "../runtime/tls.js";
import { createTestDatabase, type TestDatabase } from "../test/support/database.js";
import { testCerts, type TestCerts } from "../test/support/certs.js";
import { infra } from "../test/support/env.js";
import { waitFor } from "../test/support/wait.js";
import { benchToken } from "./lib/auth.js";
import { ServerProcess } from "./lib/children.js";
import { startEnvoy, type BenchEnvoy } from "./lib/envoy.js";
import { seedPeer } from "./lib/peer.js";
import { entityId, seedEntities } from "./lib/dataset.js";
import { describeLoad, grpcFrame, h2load, type LoadOptions, type LoadResult } from "./lib/h2load.js";
import { scrape, sumOf, type Sample } from "./lib/prometheus.js";
import type { ZipfDone } from "./lib/serve.js";
import { Zipf } from "./lib/zipf.js";
import { resultsPath, runTracingVariants, tracingEnv } from "./lib/tracing.js";
import { httpGet } from "./lib/http-get.js";

const env = (name: string, fallback: number) => (process.env[name] ? Number(process.env[name]) : fallback);
const DURATION_S = env("BENCH_DURATION_S", 5);
const WARMUP_S = env("BENCH_WARMUP_S", 1);
const H1_CLIENTS = env("BENCH_H1_CLIENTS", 64);
const H2_CLIENTS = env("BENCH_H2_CLIENTS", 4);
const H2_STREAMS = env("BENCH_H2_STREAMS", 32);
const ZIPF = { keys: 10_000, s: 1.1, seed: 20_251_201, reads: env("BENCH_ZIPF_READS", 300_000), concurrency: 64, maxMs: env("BENCH_ZIPF_MAX_S", 60) * 1000 };
const REDIS_CALLERS = 64;
const REDIS_SECONDS = 3;
const MAX_S = env("BENCH_MAX_S", 240);
/** Unmeasured load on the edge and QueryService first, so that V8 has optimized their (large) hot paths. */
const JIT_WARMUP_S = env("BENCH_JIT_WARMUP_S", 3);
const CPU_PROF = process.env.BENCH_CPU_PROF;
/** The colocated leg's L1 (the resource policy's l1Ms); 0: off. */
const COLOCATED_L1_MS = env("BENCH_COLOCATED_L1_MS", 0);
const EDGE_CHANNEL_OPTIONS = process.env.BENCH_EDGE_CHANNEL_OPTIONS ? (JSON.parse(process.env.BENCH_EDGE_CHANNEL_OPTIONS) as Record<string, unknown>) : undefined;

const TENANT = "bench";
const TYPE = "item";
const HOT_ID = entityId(1);
const REST_PATH = `/v1/tenants/${TENANT}/types/${TYPE}/entities/${HOT_ID}`;
const GRPC_PATH = "/umw.v1.QueryService/GetEntity";
const RESULTS = resultsPath(join(dirname(fileURLToPath(import.meta.url)), "results"), "read");

const TARGETS = { ratio_colocated_to_peer: 1.0, ratio_edge_to_floor: 0.35, ratio_grpc_to_floor: 0.5, zipf_hit_ratio: 0.95, zipf_backend_share: 0.05, ratio_auth_on_to_off: 0.85 } as const;

const began = performance.now();
const elapsed = () => `${((performance.now() - began) / 1000).toFixed(1)}s`.padStart(6);
const load1 = () => Math.round(os.loadavg()[0]! * 100) / 100;
const loadSamples: { phase: string; load1: number; load5: number }[] = [];
function progress(phase: string, message: string): void {
  const [one, five] = os.loadavg();
  loadSamples.push({ phase, load1: Math.round(one! * 100) / 100, load5: Math.round(five! * 100) / 100 });
  console.log(`[${elapsed()}] ${phase.padEnd(9)} ${message}  (load ${one!.toFixed(2)})`);
}

const processes: ServerProcess[] = [];
let db: TestDatabase | undefined;
let certs: TestCerts | undefined;
/** The Redis connection of INFO cpu; closed by cleanup() too, so that a failed run does not stay alive. */
let adminRedis: Redis | undefined;
/** Envoy and its policy service while they run; stopped by cleanup() when the run fails meanwhile. */
let runningEnvoy: BenchEnvoy | undefined;
const keyPrefix = `bench:${randomBytes(4).toString("hex")}:`;

async function spawn(name: string, spec: Parameters<typeof ServerProcess.start>[1]): Promise<ServerProcess> {
  const server = await ServerProcess.start(name, spec, { cpuProfDir: CPU_PROF ? join(CPU_PROF, name) : undefined });
  processes.push(server);
  return server;
}

async function retire(server: ServerProcess): Promise<void> {
  await server.stop();
  processes.splice(processes.indexOf(server), 1);
}

/** One h2load run with the CPU each server process (and Redis, when given) used meanwhile (% of one core). */
interface Run extends LoadResult {
  readonly cpu: Record<string, number>;
  /** CPU time of all watched processes per request: less sensitive to a busy machine than req/s. */
  readonly cpuUsPerRequest: number;
  readonly load1: number;
}

/** A process whose CPU a run accounts for: a ServerProcess, or Envoy. */
interface CpuWatched {
  readonly name: string;
  markCpu(): Promise<void>;
  cpuSince(): Promise<number>;
}

async function measure(options: LoadOptions, watched: readonly CpuWatched[], redis?: Redis): Promise<Run> {
  await Promise.all(watched.map((server) => server.markCpu()));
  const redisBefore = redis ? await redisCpu(redis) : 0;
  const started = performance.now();
  const result = await h2load(options);
  const seconds = (performance.now() - started) / 1000;
  const cpu: Record<string, number> = Object.fromEntries(await Promise.all(watched.map(async (server) => [server.name, await server.cpuSince()] as const)));
  if (redis) cpu.redis = Math.round((((await redisCpu(redis)) - redisBefore) / seconds) * 100);
  if (result.failed > 0 || result.requests === 0) throw new Error(`${result.command}: ${result.failed} failed of ${result.requests + result.failed}`);
  const busy = Object.values(cpu).reduce((sum, pct) => sum + pct, 0) / 100;
  return { ...result, cpu, cpuUsPerRequest: Math.round((busy * 1e6) / result.rps), load1: load1() };
}

const fmt = (run: Run) =>
  `${run.rps.toLocaleString("en-US")} req/s, p50 ${run.p50Ms} ms, p99 ${run.p99Ms} ms, cpu ${Object.entries(run.cpu).map(([name, pct]) => `${name} ${pct}%`).join(" ")} (${run.cpuUsPerRequest} µs/req)`;

/** CPU time of one process (by name) per request of a run, µs. */
const usPerRequest = (run: Run, name: string) => Math.round(((run.cpu[name] ?? 0) / 100) * (1e6 / run.rps));


/** One GetEntity (over insecure gRPC unless told), bytes untouched: the exact response message and its headers. */
function grpcGet(address: string, message: Uint8Array, credentials: ChannelCredentials = grpcCredentials.createInsecure()): Promise<{ response: Buffer; headers: Record<string, string> }> {
  const client = new Client(address, credentials);
  return new Promise((resolve, reject) => {
    let headers: Record<string, string> = {};
    const call = client.makeUnaryRequest(
      GRPC_PATH,
      (value: Buffer) => value,
      (value: Buffer) => value,
      Buffer.from(message),
      new Metadata(),
      { deadline: Date.now() + 5_000 },
      (error, response) => {
        client.close();
        if (error) reject(error);
        else resolve({ response: response!, headers });
      },
    );
    call.on("metadata", (metadata: Metadata) => {
      headers = Object.fromEntries(Object.entries(metadata.getMap()).map(([key, value]) => [key, String(value)]));
    });
  });
}

const QUERY_COUNTERS = {
  hits: "umw_query_cache_hits_total",
  misses: "umw_query_cache_misses_total",
  collapsed: "umw_query_cache_collapsed_total",
  negativeHits: "umw_query_cache_negative_hits_total",
  staleServed: "umw_query_cache_stale_served_total",
  earlyRefreshes: "umw_query_cache_early_refreshes_total",
  fenced: "umw_query_cache_fenced_total",
  cacheErrors: "umw_query_cache_errors_total",
} as const;

type Counters = Record<keyof typeof QUERY_COUNTERS | "backendGets", number>;

function countersOf(samples: readonly Sample[]): Counters {
  const counters = Object.fromEntries(Object.entries(QUERY_COUNTERS).map(([key, name]) => [key, sumOf(samples, name)])) as Counters;
  counters.backendGets = sumOf(samples, "umw_query_backend_duration_seconds_count", { op: "get" });
  return counters;
}

async function queryCounters(server: ServerProcess): Promise<Counters> {
  return countersOf(await scrape(server.info.metricsUrl!));
}

function delta(after: Counters, before: Counters): Counters {
  return Object.fromEntries(Object.keys(after).map((key) => [key, after[key as keyof Counters] - before[key as keyof Counters]])) as Counters;
}

/** Redis's own CPU seconds (INFO cpu), to show what the cache server used during a run. */
async function redisCpu(redis: Redis): Promise<number> {
  const info = await redis.info("cpu");
  const user = Number(/used_cpu_user:([\d.]+)/.exec(info)?.[1] ?? 0);
  const sys = Number(/used_cpu_sys:([\d.]+)/.exec(info)?.[1] ?? 0);
  return user + sys;
}

function round(value: number, digits = 3): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

function mean(a: number, b: number): number {
  return Math.round((a + b) / 2);
}

async function preflight(): Promise<void> {
  try {
    execFileSync("h2load", ["--version"], { stdio: "ignore" });
  } catch {
    throw new Error("h2load is not installed: run scripts/bench-tools.sh");
  }
  const redis = new Redis(infra.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: 1_000, retryStrategy: () => null });
  try {
    await redis.connect();
    await redis.ping();
  } catch {
    throw new Error(`Redis is not reachable at ${infra.redisUrl}: run scripts/infra.sh up`);
  } finally {
    redis.disconnect();
  }
}

async function deleteKeys(redis: Redis, prefix: string): Promise<number> {
  let cursor = "0";
  let deleted = 0;
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
    cursor = next;
    if (keys.length > 0) deleted += await redis.del(...keys);
  } while (cursor !== "0");
  return deleted;
}

async function main(): Promise<void> {
  const notes: string[] = [];
  const loadStart = os.loadavg().map((value) => round(value, 2));
  await preflight();
  const admin = (adminRedis = new Redis(infra.redisUrl, { maxRetriesPerRequest: 1 }));

  // ------------------------------------------------------------------ setup
  // policy: the policy service Envoy's ext_authz asks (bench/lib/envoy.ts).
  certs = testCerts(["query", "edge", "envoy", "policy"]);
  db = await createTestDatabase({ replica: true });
  const seeded = await seedEntities(db.url, db.replicaUrl, TENANT, TYPE, ZIPF.keys);
  if (seeded.rows !== ZIPF.keys) throw new Error(`the replica holds ${seeded.rows} of ${ZIPF.keys} seeded entities`);
  progress("setup", `database ${db.name}: ${seeded.rows} entities written through the primary, on the replica after ${seeded.replicaWaitMs} ms; Redis prefix ${keyPrefix}`);

  const queryBase = { redisUrl: infra.redisUrl, replicaUrl: db.replicaUrl, keyPrefix, types: [TYPE] };
  const query = await spawn("query", { role: "query", certsDir: certs.dir, ...queryBase });
  const edge = await spawn("edge", { role: "edge", certsDir: certs.dir, queryAddress: query.info.address!, channelOptions: EDGE_CHANNEL_OPTIONS });
  progress("setup", `query (mTLS) at ${query.info.address}, edge at ${edge.info.url} (h2c port ${edge.info.h2cPort})`);
  // The auth-on pair: the edge verifies bearer tokens of a dev issuer (its key in devKeysDir), the
  // QueryService asks the OPA policy and the mesh authorization table, as under `umw serve`.
  const devKeysDir = join(certs.dir, "dev-issuer");
  const tokens = {
    reader: await benchToken(devKeysDir, TENANT, ["entities:read"]),
    otherTenant: await benchToken(devKeysDir, `${TENANT}-other`, ["entities:read"]),
    noReadScope: await benchToken(devKeysDir, TENANT, ["commands:read"]),
  };
  const queryAuth = await spawn("query-auth", { role: "query", certsDir: certs.dir, ...queryBase, authorization: true });
  const edgeAuth = await spawn("edge-auth", { role: "edge", certsDir: certs.dir, queryAddress: queryAuth.info.address!, channelOptions: EDGE_CHANNEL_OPTIONS, devKeysDir });
  progress("setup", `auth on: query (mTLS, OPA policy, mesh table) at ${queryAuth.info.address}, edge (bearer, dev issuer) at ${edgeAuth.info.url}`);

  // ------------------------------------------------------------------- zipf
  // Cold cache (a fresh key prefix); reads on the QueryService's EntityReader, counted by its metrics.
  const zipfBefore = await queryCounters(query);
  const zipfDone: ZipfDone = await query.zipf({ tenant: TENANT, type: TYPE, ...ZIPF });
  const zipfCounters = delta(await queryCounters(query), zipfBefore);
  const answered = zipfCounters.hits + zipfCounters.misses + zipfCounters.collapsed + zipfCounters.negativeHits + zipfCounters.staleServed;
  if (zipfDone.errors > 0 || zipfDone.notFound > 0) throw new Error(`zipf: ${zipfDone.errors} errors, ${zipfDone.notFound} not found`);
  if (answered !== zipfDone.reads) notes.push(`zipf: the counters account for ${answered} reads of ${zipfDone.reads} issued`);
  const zipfHitRatio = zipfCounters.hits / zipfDone.reads;
  const zipfBackendShare = zipfCounters.backendGets / zipfDone.reads;
  const expectedDistinct = new Zipf(ZIPF.keys, ZIPF.s).expectedDistinct(zipfDone.reads);
  progress(
    "zipf",
    `${zipfDone.reads.toLocaleString("en-US")} reads in ${zipfDone.ms} ms, ${zipfDone.distinctKeys} distinct keys: hits ${zipfCounters.hits}, misses ${zipfCounters.misses}, collapsed ${zipfCounters.collapsed}, backend gets ${zipfCounters.backendGets} → hit ratio ${round(zipfHitRatio, 4)}, backend share ${round(zipfBackendShare, 4)}`,
  );
  if (zipfDone.stoppedEarly) notes.push(`zipf: stopped at the ${ZIPF.maxMs / 1000} s bound after ${zipfDone.reads} of ${ZIPF.reads} reads`);

  // --------------------------------------------------------------- edge hit
  const warm = await httpGet(edge.info.port, REST_PATH);
  const sample = await httpGet(edge.info.port, REST_PATH);
  if (sample.status !== 200 || !/^umw; hit/.test(sample.headers["cache-status"] ?? "")) {
    throw new Error(`edge: GET ${REST_PATH} answered ${sample.status} (${sample.headers["cache-status"]}) after a warm-up ${warm.status}`);
  }
  const edgeHeaders: Record<string, string> = {};
  for (const name of ["content-type", "cache-control", "x-request-id", "etag", "cache-status"]) {
    if (sample.headers[name] !== undefined) edgeHeaders[name] = sample.headers[name]!;
  }
  const floorSpec = { bodyBase64: sample.body.toString("base64"), headers: edgeHeaders };
  const floorHttp = await spawn("floor-http", { role: "floor-http", ...floorSpec });
  const floorH2c = await spawn("floor-h2c", { role: "floor-h2c", ...floorSpec });
  progress("edge", `GET ${REST_PATH} → ${sample.status}, ${sample.body.length} bytes, cache-status "${sample.headers["cache-status"]}"; floors serve the same bytes and headers`);

  const modes = [
    { mode: "http/1.1", floor: floorHttp, edgePort: edge.info.port, load: { http1: true, clients: H1_CLIENTS, streams: 1 } },
    { mode: "h2c", floor: floorH2c, edgePort: edge.info.h2cPort!, load: { http1: false, clients: H2_CLIENTS, streams: H2_STREAMS } },
  ];
  for (const { mode, edgePort, load } of modes) {
    await h2load({ url: `http://127.0.0.1:${edgePort}${REST_PATH}`, ...load, durationS: JIT_WARMUP_S, warmupS: 0 });
    progress("edge", `${mode}: ${JIT_WARMUP_S} s of unmeasured load on the edge (JIT warm-up)`);
  }
  const edgeRuns: Record<
    string,
    { floorBefore: Run; edge: Run; floorAfter: Run; counters: Counters; floor_rps: number; ratio: number; cpu_ratio: number; settings: Record<string, unknown> }
  > = {};
  for (const { mode, floor, edgePort, load } of modes) {
    const timing = { durationS: DURATION_S, warmupS: WARMUP_S };
    const floorBefore = await measure({ url: `http://127.0.0.1:${floor.info.port}${REST_PATH}`, ...load, ...timing }, [floor]);
    progress("edge", `${mode} floor (before): ${fmt(floorBefore)}`);
    const before = await queryCounters(query);
    const edgeRun = await measure({ url: `http://127.0.0.1:${edgePort}${REST_PATH}`, ...load, ...timing }, [edge, query], admin);
    const counters = delta(await queryCounters(query), before);
    // h2load counts 2xx; the query's own counters say whether every one of them was a cache hit.
    if (counters.hits < edgeRun.requests || counters.misses + counters.collapsed + counters.cacheErrors > 0) {
      throw new Error(`edge ${mode}: ${edgeRun.requests} requests but query hits ${counters.hits}, misses ${counters.misses}, cache errors ${counters.cacheErrors}`);
    }
    progress("edge", `${mode} edge → query (mTLS) → Redis: ${fmt(edgeRun)}; query hits +${counters.hits}`);
    const floorAfter = await measure({ url: `http://127.0.0.1:${floor.info.port}${REST_PATH}`, ...load, ...timing }, [floor]);
    progress("edge", `${mode} floor (after): ${fmt(floorAfter)}`);
    const floorRps = mean(floorBefore.rps, floorAfter.rps);
    const cpuRatio = round((floorBefore.cpuUsPerRequest + floorAfter.cpuUsPerRequest) / 2 / edgeRun.cpuUsPerRequest);
    edgeRuns[mode] = { floorBefore, edge: edgeRun, floorAfter, counters, floor_rps: floorRps, ratio: round(edgeRun.rps / floorRps), cpu_ratio: cpuRatio, settings: describeLoad({ url: "", ...load, ...timing }) };
  }
  // ---------------------------------------------------- authentication on
  // The same GET, HTTP/1.1, through the auth-on pair (the edge verifies the bearer token — a
  // verified-token cache hit after the first request — and forwards the principal; the QueryService
  // runs the mesh table and the OPA policy before the handler) and the auth-off pair, alternating
  // off, on, off so that drift in the machine's load falls on both.
  const authLoad = modes[0]!.load;
  const authHeaders = { authorization: `Bearer ${tokens.reader}` };
  const authProof = await proveAuthOn(edgeAuth.info.port, queryAuth.info.address!, certs.dir, tokens, sample.body);
  progress("auth", `auth-on edge: ${authProof.join("; ")}`);
  // As much unmeasured load as the auth-off edge had before its first measured run (one warm-up per protocol).
  await h2load({ url: `http://127.0.0.1:${edgeAuth.info.port}${REST_PATH}`, ...authLoad, headers: authHeaders, durationS: 2 * JIT_WARMUP_S, warmupS: 0 });
  progress("auth", `http/1.1: ${2 * JIT_WARMUP_S} s of unmeasured load on the auth-on edge (JIT warm-up)`);
  const authTiming = { durationS: DURATION_S, warmupS: WARMUP_S };
  const measureHits = async (label: string, edgeServer: ServerProcess, queryServer: ServerProcess, headers?: Record<string, string>) => {
    const before = await queryCounters(queryServer);
    const run = await measure({ url: `http://127.0.0.1:${edgeServer.info.port}${REST_PATH}`, ...authLoad, ...authTiming, headers }, [edgeServer, queryServer], admin);
    const counters = delta(await queryCounters(queryServer), before);
    if (counters.hits < run.requests || counters.misses + counters.collapsed + counters.cacheErrors > 0) {
      throw new Error(`${label}: ${run.requests} requests but query hits ${counters.hits}, misses ${counters.misses}, cache errors ${counters.cacheErrors}`);
    }
    progress("auth", `${label}: ${fmt(run)}; query hits +${counters.hits}`);
    return run;
  };
  const authOffBefore = await measureHits("http/1.1 auth off (before)", edge, query);
  const authOn = await measureHits("http/1.1 auth on", edgeAuth, queryAuth, authHeaders);
  const authOffAfter = await measureHits("http/1.1 auth off (after)", edge, query);
  await retire(edgeAuth);
  await retire(queryAuth);
  const authOffRps = mean(authOffBefore.rps, authOffAfter.rps);
  const authRatio = round(authOn.rps / authOffRps);
  const authFigures = {
    edge_hit_rps_auth_on: authOn.rps,
    edge_hit_rps_auth_off: authOffRps,
    ratio_auth_on_to_off: authRatio,
    auth_cpu_us_per_request: {
      on: authOn.cpuUsPerRequest,
      off: mean(authOffBefore.cpuUsPerRequest, authOffAfter.cpuUsPerRequest),
      edge_on: usPerRequest(authOn, "edge-auth"),
      edge_off: mean(usPerRequest(authOffBefore, "edge"), usPerRequest(authOffAfter, "edge")),
      query_on: usPerRequest(authOn, "query-auth"),
      query_off: mean(usPerRequest(authOffBefore, "query"), usPerRequest(authOffAfter, "query")),
    },
  };
  progress("auth", `auth on ${authOn.rps} req/s vs off ${authOffRps} req/s (mean of before and after) → ratio ${authRatio}; cpu ${authFigures.auth_cpu_us_per_request.on} vs ${authFigures.auth_cpu_us_per_request.off} µs/req`);

  // ----------------------------------------------------- hand-written peer
  // What a user would write instead of umw: node:http + ioredis, the same entity as JSON in the same
  // Redis, rendered with its ETag (bench/lib/peer.ts). HTTP/1.1 like the edge's run; measured twice
  // (here and after Envoy), the figure is the mean.
  const h1Load = modes[0]!.load;
  const peerPrefix = `${keyPrefix}peer:`;
  await seedPeer(infra.redisUrl, peerPrefix, TENANT, TYPE, HOT_ID, sample.body);
  const peer = await spawn("peer", { role: "peer", redisUrl: infra.redisUrl, keyPrefix: peerPrefix });
  const peerUrl = `http://127.0.0.1:${peer.info.port}${REST_PATH}`;
  const peerCheck = await httpGet(peer.info.port, REST_PATH);
  if (peerCheck.status !== 200 || JSON.stringify(JSON.parse(peerCheck.body.toString())) !== JSON.stringify(JSON.parse(sample.body.toString()))) {
    throw new Error(`peer: GET ${REST_PATH} answered ${peerCheck.status} with other JSON than the edge`);
  }
  await h2load({ url: peerUrl, ...h1Load, durationS: JIT_WARMUP_S, warmupS: 0 });
  const peerBefore = await measure({ url: peerUrl, ...h1Load, durationS: DURATION_S, warmupS: WARMUP_S }, [peer], admin);
  progress("peer", `HTTP/1.1 hand-written peer (node:http + ioredis) → Redis: ${fmt(peerBefore)}`);

  // -------------------------------------------------------------- colocated
  // `umw serve all`: the edge and the QueryService in one process, authentication, policy and metrics
  // on, the edge's calls in process (UMW_IN_PROCESS_TRANSPORT) — and, for comparison, the same
  // process with the in-process transport off (mTLS gRPC over loopback). Between the peer's two runs.
  const colocatedRuns: Record<string, Run> = {};
  for (const [label, inProcess] of [["in-process", true], ["grpc", false]] as const) {
    const colocated = await spawn(`colocated-${label}`, { role: "colocated", certsDir: certs.dir, devKeysDir, ...queryBase, l1Ms: COLOCATED_L1_MS, inProcess });
    const check = await httpGet(colocated.info.port, REST_PATH, authHeaders);
    if (check.status !== 200 || JSON.stringify(JSON.parse(check.body.toString())) !== JSON.stringify(JSON.parse(sample.body.toString()))) {
      throw new Error(`colocated ${label}: GET ${REST_PATH} answered ${check.status} with other JSON than the edge`);
    }
    await h2load({ url: `http://127.0.0.1:${colocated.info.port}${REST_PATH}`, ...h1Load, headers: authHeaders, durationS: 2 * JIT_WARMUP_S, warmupS: 0 });
    const before = await queryCounters(colocated);
    const run = await measure({ url: `http://127.0.0.1:${colocated.info.port}${REST_PATH}`, ...h1Load, headers: authHeaders, durationS: DURATION_S, warmupS: WARMUP_S }, [colocated], admin);
    const counters = delta(await queryCounters(colocated), before);
    if (counters.hits < run.requests || counters.misses + counters.collapsed + counters.cacheErrors > 0) {
      throw new Error(`colocated ${label}: ${run.requests} requests but query hits ${counters.hits}, misses ${counters.misses}, cache errors ${counters.cacheErrors}`);
    }
    progress("colocated", `HTTP/1.1 edge + query in one process (${label}, auth on${COLOCATED_L1_MS ? `, L1 ${COLOCATED_L1_MS} ms` : ""}): ${fmt(run)}; query hits +${counters.hits}`);
    colocatedRuns[label] = run;
    await retire(colocated);
  }

  // -------------------------------------------------------------- Envoy hit
  // The production edge in front of the same QueryService: Envoy 1.40 (--concurrency 1) on the static
  // config `umw envoy-config` renders (REST transcoding, mTLS upstream), HTTP/1.1 like the node:http floor.
  const envoy = (runningEnvoy = await startEnvoy({ certsDir: certs.dir, queryAddress: query.info.address!, workDir: certs.dir }));
  const envoyUrl = `http://127.0.0.1:${envoy.port}${REST_PATH}`;
  // Envoy routes once its health check has passed the query instance.
  await waitFor(
    async () => {
      const answer = await httpGet(envoy.port, REST_PATH).catch(() => undefined);
      return answer?.status === 200 && /^umw; hit/.test(answer.headers["cache-status"] ?? "");
    },
    { what: `a cache hit for GET ${REST_PATH} through Envoy`, timeoutMs: 30_000, everyMs: 200 },
  );
  const h1 = modes[0]!.load;
  await h2load({ url: envoyUrl, ...h1, durationS: JIT_WARMUP_S, warmupS: 0 });
  const envoyCountersBefore = await queryCounters(query);
  const envoyRun = await measure({ url: envoyUrl, ...h1, durationS: DURATION_S, warmupS: WARMUP_S }, [envoy, query], admin);
  const envoyCounters = delta(await queryCounters(query), envoyCountersBefore);
  if (envoyCounters.hits < envoyRun.requests || envoyCounters.misses + envoyCounters.collapsed + envoyCounters.cacheErrors > 0) {
    throw new Error(`envoy: ${envoyRun.requests} requests but query hits ${envoyCounters.hits}, misses ${envoyCounters.misses}`);
  }
  await envoy.stop();
  runningEnvoy = undefined;
  const h1Runs = edgeRuns["http/1.1"]!;
  const envoyFigures = {
    envoy_hit_rps: envoyRun.rps,
    envoy_hit_p99_ms: envoyRun.p99Ms,
    ratio_envoy_to_floor: round(envoyRun.rps / h1Runs.floor_rps),
    ratio_envoy_to_node_edge: round(envoyRun.rps / h1Runs.edge.rps),
    cpu_us_per_request: {
      envoy: usPerRequest(envoyRun, "envoy"),
      query_behind_envoy: usPerRequest(envoyRun, "query"),
      node_edge: usPerRequest(h1Runs.edge, "edge"),
      query_behind_node_edge: usPerRequest(h1Runs.edge, "query"),
    },
  };
  progress("envoy", `HTTP/1.1 Envoy → query (mTLS) → Redis: ${fmt(envoyRun)}; ratio to the floor ${envoyFigures.ratio_envoy_to_floor}, to the Node edge ${envoyFigures.ratio_envoy_to_node_edge}`);
  const peerAfter = await measure({ url: peerUrl, ...h1Load, durationS: DURATION_S, warmupS: WARMUP_S }, [peer], admin);
  progress("peer", `HTTP/1.1 hand-written peer (after): ${fmt(peerAfter)}`);
  await retire(peer);
  const peerRps = mean(peerBefore.rps, peerAfter.rps);
  const peerFigures = {
    peer_hit_rps: peerRps,
    peer_cpu_us_per_request: Math.round((peerBefore.cpuUsPerRequest + peerAfter.cpuUsPerRequest) / 2),
    ratio_edge_h1_to_peer: round(h1Runs.edge.rps / peerRps),
    ratio_envoy_to_peer: round(envoyRun.rps / peerRps),
    colocated_hit_rps: colocatedRuns["in-process"]!.rps,
    colocated_grpc_hit_rps: colocatedRuns.grpc!.rps,
    colocated_cpu_us_per_request: colocatedRuns["in-process"]!.cpuUsPerRequest,
    colocated_grpc_cpu_us_per_request: colocatedRuns.grpc!.cpuUsPerRequest,
    ratio_colocated_to_peer: round(colocatedRuns["in-process"]!.rps / peerRps),
  };

  await retire(floorHttp);
  await retire(floorH2c);
  await retire(edge);
  await retire(query);
  const edgeMode = Object.entries(edgeRuns).sort(([, a], [, b]) => b.edge.rps - a.edge.rps)[0]![0];
  const best = edgeRuns[edgeMode]!;

  // --------------------------------------------------------------- gRPC hit
  // h2load has no client certificate: this QueryService instance (same Redis keys, same replica)
  // listens with insecure credentials, and so does the grpc-js floor.
  const grpcQuery = await spawn("query-insecure", { role: "query", ...queryBase });
  const requestMessage = toBinary(GetEntityRequestSchema, create(GetEntityRequestSchema, { tenant: TENANT, type: TYPE, id: HOT_ID }));
  const exact = await grpcGet(grpcQuery.info.address!, requestMessage);
  if (!/^umw; hit/.test(exact.headers["umw-cache-status"] ?? "")) throw new Error(`GetEntity ${HOT_ID} is not a cache hit: ${exact.headers["umw-cache-status"]}`);
  const floorGrpc = await spawn("floor-grpc", {
    role: "floor-grpc",
    path: GRPC_PATH,
    bodyBase64: exact.response.toString("base64"),
    headers: { "umw-cache-status": exact.headers["umw-cache-status"]! },
  });
  progress("grpc", `GetEntity ${HOT_ID} → ${exact.response.length}-byte GetEntityResponse, "${exact.headers["umw-cache-status"]}"; insecure credentials on both servers (h2load has no client certificate)`);
  const grpcLoad = {
    body: grpcFrame(requestMessage),
    headers: { "content-type": "application/grpc", te: "trailers" },
    clients: H2_CLIENTS,
    streams: H2_STREAMS,
    durationS: DURATION_S,
    warmupS: WARMUP_S,
  };
  await h2load({ url: `http://127.0.0.1:${grpcQuery.info.port}${GRPC_PATH}`, ...grpcLoad, durationS: JIT_WARMUP_S, warmupS: 0 });
  progress("grpc", `${JIT_WARMUP_S} s of unmeasured load on QueryService (JIT warm-up)`);
  const grpcFloorBefore = await measure({ url: `http://127.0.0.1:${floorGrpc.info.port}${GRPC_PATH}`, ...grpcLoad }, [floorGrpc]);
  progress("grpc", `grpc-js floor (before): ${fmt(grpcFloorBefore)}`);
  const grpcBefore = await queryCounters(grpcQuery);
  const grpcRun = await measure({ url: `http://127.0.0.1:${grpcQuery.info.port}${GRPC_PATH}`, ...grpcLoad }, [grpcQuery], admin);
  const grpcCounters = delta(await queryCounters(grpcQuery), grpcBefore);
  // HTTP 200 is not a gRPC success: every request must have been answered from the cache.
  if (grpcCounters.hits < grpcRun.requests || grpcCounters.misses + grpcCounters.collapsed + grpcCounters.cacheErrors > 0) {
    throw new Error(`grpc: ${grpcRun.requests} requests but query hits ${grpcCounters.hits}, misses ${grpcCounters.misses}`);
  }
  progress("grpc", `QueryService GetEntity (cache hit): ${fmt(grpcRun)}; query hits +${grpcCounters.hits}`);
  const grpcFloorAfter = await measure({ url: `http://127.0.0.1:${floorGrpc.info.port}${GRPC_PATH}`, ...grpcLoad }, [floorGrpc]);
  progress("grpc", `grpc-js floor (after): ${fmt(grpcFloorAfter)}`);
  await retire(floorGrpc);
  await retire(grpcQuery);
  const floorGrpcRps = mean(grpcFloorBefore.rps, grpcFloorAfter.rps);
  const grpcCpuRatio = round((grpcFloorBefore.cpuUsPerRequest + grpcFloorAfter.cpuUsPerRequest) / 2 / grpcRun.cpuUsPerRequest);

  // ------------------------------------------------------------------ redis
  // Like RedisCache: ioredis with auto-pipelining; N callers each awaiting one GET at a time.
  const redis = new Redis(infra.redisUrl, { enableAutoPipelining: true, maxRetriesPerRequest: 1 });
  const hotKey = `${keyPrefix}umw:${TENANT}:${TYPE}:${HOT_ID}`;
  const value = await redis.getBuffer(hotKey);
  if (!value) throw new Error(`redis: ${hotKey} is not cached`);
  let ops = 0;
  const redisCpuBefore = await redisCpu(admin);
  const redisStarted = performance.now();
  const until = redisStarted + REDIS_SECONDS * 1000;
  await Promise.all(
    Array.from({ length: REDIS_CALLERS }, async () => {
      while (performance.now() < until) {
        await redis.getBuffer(hotKey);
        ops++;
      }
    }),
  );
  const redisSeconds = (performance.now() - redisStarted) / 1000;
  const redisOps = Math.round(ops / redisSeconds);
  const redisServerPct = Math.round(((await redisCpu(admin)) - redisCpuBefore) / redisSeconds * 100);
  redis.disconnect();
  progress("redis", `ioredis GET of one ${value.length}-byte entry, ${REDIS_CALLERS} concurrent callers, auto-pipelining: ${redisOps.toLocaleString("en-US")} ops/s (redis-server cpu ${redisServerPct}%)`);

  // ---------------------------------------------------------------- results
  const ratioEdge = round(best.edge.rps / best.floor_rps);
  const ratioGrpc = round(grpcRun.rps / floorGrpcRps);
  const figures = {
    edge_hit_rps: best.edge.rps,
    edge_hit_p99_ms: best.edge.p99Ms,
    edge_mode: edgeMode,
    grpc_hit_rps: grpcRun.rps,
    floor_http_rps: best.floor_rps,
    floor_grpc_rps: floorGrpcRps,
    redis_get_ops: redisOps,
    redis_get_concurrency: REDIS_CALLERS,
    ratio_edge_to_floor: ratioEdge,
    ratio_grpc_to_floor: ratioGrpc,
    zipf_hit_ratio: round(zipfHitRatio, 4),
    zipf_backend_share: round(zipfBackendShare, 4),
    ...envoyFigures,
    ...peerFigures,
    ...authFigures,
  };
  const targets = {
    ratio_edge_to_floor: { target: TARGETS.ratio_edge_to_floor, value: ratioEdge, met: ratioEdge >= TARGETS.ratio_edge_to_floor },
    ratio_grpc_to_floor: { target: TARGETS.ratio_grpc_to_floor, value: ratioGrpc, met: ratioGrpc >= TARGETS.ratio_grpc_to_floor },
    zipf_hit_ratio: { target: TARGETS.zipf_hit_ratio, value: figures.zipf_hit_ratio, met: zipfHitRatio >= TARGETS.zipf_hit_ratio },
    zipf_backend_share: { target: TARGETS.zipf_backend_share, value: figures.zipf_backend_share, met: zipfBackendShare <= TARGETS.zipf_backend_share },
    ratio_auth_on_to_off: { target: TARGETS.ratio_auth_on_to_off, value: authRatio, met: authRatio >= TARGETS.ratio_auth_on_to_off },
    ratio_colocated_to_peer: { target: TARGETS.ratio_colocated_to_peer, value: peerFigures.ratio_colocated_to_peer, met: peerFigures.ratio_colocated_to_peer >= TARGETS.ratio_colocated_to_peer },
  };
  const busiest = Math.max(...loadSamples.map((sample) => sample.load1));
  if (busiest > os.cpus().length) {
    notes.push(`The machine was busy with other work: 1-minute load average up to ${busiest} on ${os.cpus().length} cpus during the run. Every figure is depressed by it, the multi-process edge path (h2load, edge, query, Redis all waiting for a core) more than the single-process floors.`);
  }
  notes.push(
    "Each server runs in a process of its own (bench/lib/serve.ts); h2load (one thread) shares the machine's cores with them, and with whatever else runs (see machine.load).",
    `edge: REST GET of one cached entity through the edge (HTTP/1.1 -c ${H1_CLIENTS}, and h2c -c ${H2_CLIENTS} -m ${H2_STREAMS}); edge → QueryService over mTLS gRPC; QueryService on Redis and the streaming replica. edge_hit_* is the faster mode (${edgeMode}); its floor is the bare server of the same protocol (node:http for HTTP/1.1, node:http2 for h2c) answering the edge's bytes and headers.`,
    "grpc: h2load has no client certificate, so the QueryService instance measured directly and the grpc-js floor both use insecure credentials (the edge's upstream call above is mTLS).",
    "Floors are measured right before and right after the server they are the floor of; the floor figure is the mean of the two.",
    `Before the measured runs, the edge (each protocol) and the direct QueryService get ${JIT_WARMUP_S} s of unmeasured load, so that their large hot paths (grpc-js, protobuf-es, node:http2) are JIT-optimized like a long-running server's; the floors need no more than h2load's own ${WARMUP_S} s warm-up, which every measured run has.`,
    `zipf: Zipf(s=${ZIPF.s}) over ${ZIPF.keys} seeded keys, from a cold cache, ${ZIPF.concurrency} concurrent reads on the QueryService's EntityReader; ratios from the query metrics (hits, backend get count) over reads issued. A cold start has one compulsory miss per distinct key: ${zipfDone.distinctKeys} distinct keys in ${zipfDone.reads} reads bound the hit ratio at ${round(1 - zipfDone.distinctKeys / zipfDone.reads, 4)}.`,
    "supplementary.cpu_ratio_*: CPU time per request of the floor over that of the measured path (edge + query + Redis for REST; query + Redis for gRPC), from the same runs: how much work a request costs compared with the floor, another view of the same runs (a busy machine inflates it too, less than it depresses req/s).",
    "peer: the hand-written alternative to umw a user might write (bench/lib/peer.ts): node:http, ioredis with auto-pipelining, the entity stored as JSON under its own key, parsed and rendered with an ETag per request; no authentication, policy or metrics. Measured before and after the Envoy run, HTTP/1.1 with the edge's load; ratio_edge_h1_to_peer and ratio_envoy_to_peer compare the edges' HTTP/1.1 runs with it.",
    `colocated: the REST GET (HTTP/1.1 -c ${H1_CLIENTS}, bearer token) through one process running the edge and the QueryService as \`umw serve all\` does (bench/lib/serve.ts, role colocated): authentication, the mesh table, the OPA policy and metrics on; \`in-process\`: the edge's calls go through the in-process transport (UMW_IN_PROCESS_TRANSPORT, the default), \`grpc\`: the same process with it off (mTLS gRPC over loopback). L1: ${COLOCATED_L1_MS ? `${COLOCATED_L1_MS} ms (BENCH_COLOCATED_L1_MS)` : "off"}. Each after ${2 * JIT_WARMUP_S} s of unmeasured load, measured between the peer's two runs; ratio_colocated_to_peer = in-process / peer (target ${TARGETS.ratio_colocated_to_peer}). The process's CPU is one core at most (one event loop), the peer's too.`,
    `redis: ${REDIS_CALLERS} concurrent callers, one GET each at a time, ioredis auto-pipelining (as RedisCache), ${REDIS_SECONDS} s.`,
    `auth: the edge REST GET (HTTP/1.1 -c ${H1_CLIENTS}) through a second edge + QueryService pair with authentication and authorization on, as \`umw serve\` runs them: the edge verifies the bearer token (\`authorization\` header on every h2load request) against a dev issuer's key (UMW_AUTH_MODE=dev; verified-token cache at its default size) and forwards the principal; the QueryService runs the mesh authorization table and the OPA policy (UMW_AUTHORIZATION=opa, policy/authz.wasm) before the handler. After ${2 * JIT_WARMUP_S} s of unmeasured load on the auth-on edge (as much as the auth-off edge had before its first run), measured between two runs of the auth-off pair (off, on, off); edge_hit_rps_auth_off is their mean, ratio_auth_on_to_off = on / off. Before measuring, the bench proves the auth-on pair refuses: no token → 401, another tenant's token → 403, a token without entities:read → 403 MISSING_SCOPE (the QueryService's policy: the edge checks no scopes), a direct call as mesh identity \`query\` → MESH_METHOD_DENIED. auth_cpu_us_per_request: CPU µs per request of edge + query + Redis (on, off), and of the edge and the query alone.`,
  );
  const results = {
    ...figures,
    targets,
    // Not targets: CPU time per request of the floor over that of the measured path (edge + query +
    // Redis; query + Redis), from the same runs. Closer to what the ratios would be on an idle machine.
    supplementary: {
      cpu_ratio_edge_to_floor: best.cpu_ratio,
      cpu_ratio_grpc_to_floor: grpcCpuRatio,
      edge_cpu_us_per_request: best.edge.cpuUsPerRequest,
      floor_http_cpu_us_per_request: Math.round((best.floorBefore.cpuUsPerRequest + best.floorAfter.cpuUsPerRequest) / 2),
      grpc_cpu_us_per_request: grpcRun.cpuUsPerRequest,
      floor_grpc_cpu_us_per_request: Math.round((grpcFloorBefore.cpuUsPerRequest + grpcFloorAfter.cpuUsPerRequest) / 2),
    },
    generated_at: new Date().toISOString(),
    command: "npm run bench:read",
    duration_s: round((performance.now() - began) / 1000, 1),
    machine: {
      cpus: os.cpus().length,
      cpu_model: os.cpus()[0]?.model,
      node: process.version,
      h2load: execFileSync("h2load", ["--version"]).toString().trim().split("\n")[0],
      load: { at_start: loadStart, at_end: os.loadavg().map((value) => round(value, 2)), by_phase: loadSamples },
    },
    h2load: {
      edge: Object.fromEntries(Object.entries(edgeRuns).map(([mode, run]) => [mode, run.settings])),
      grpc: describeLoad({ url: "", ...grpcLoad }),
    },
    runs: {
      edge: Object.fromEntries(
        Object.entries(edgeRuns).map(([mode, run]) => [
          mode,
          { floor_rps: run.floor_rps, ratio: run.ratio, cpu_ratio: run.cpu_ratio, floor_before: summary(run.floorBefore), edge: summary(run.edge), floor_after: summary(run.floorAfter), query_counters: run.counters },
        ]),
      ),
      grpc: { floor_rps: floorGrpcRps, cpu_ratio: grpcCpuRatio, floor_before: summary(grpcFloorBefore), query: summary(grpcRun), floor_after: summary(grpcFloorAfter), query_counters: grpcCounters },
      zipf: { ...ZIPF, ...zipfDone, expected_distinct_keys: Math.round(expectedDistinct), query_counters: zipfCounters },
      peer: { rps: peerRps, before: summary(peerBefore), after: summary(peerAfter) },
      auth: { off_rps: authOffRps, ratio: authRatio, refusals_checked: authProof, off_before: summary(authOffBefore), on: summary(authOn), off_after: summary(authOffAfter) },
      redis: { callers: REDIS_CALLERS, seconds: round(redisSeconds, 2), ops, value_bytes: value.length, auto_pipelining: true, redis_server_cpu_pct: redisServerPct },
    },
    edge_channel_options: EDGE_CHANNEL_OPTIONS ?? {},
    notes,
  };
  mkdirSync(dirname(RESULTS), { recursive: true });
  writeFileSync(RESULTS, JSON.stringify(results, null, 2) + "\n");

  const rows: [string, string, string][] = [
    ["edge_hit_rps", String(figures.edge_hit_rps), `${edgeMode}`],
    ["edge_hit_p99_ms", String(figures.edge_hit_p99_ms), ""],
    ["grpc_hit_rps", String(figures.grpc_hit_rps), "insecure creds"],
    ["floor_http_rps", String(figures.floor_http_rps), `${edgeMode} floor`],
    ["floor_grpc_rps", String(figures.floor_grpc_rps), ""],
    ["redis_get_ops", String(figures.redis_get_ops), `N=${REDIS_CALLERS}`],
    ["ratio_edge_to_floor", String(ratioEdge), `target ≥ ${TARGETS.ratio_edge_to_floor}: ${targets.ratio_edge_to_floor.met ? "met" : "NOT met"}`],
    ["ratio_grpc_to_floor", String(ratioGrpc), `target ≥ ${TARGETS.ratio_grpc_to_floor}: ${targets.ratio_grpc_to_floor.met ? "met" : "NOT met"}`],
    ["zipf_hit_ratio", String(figures.zipf_hit_ratio), `target ≥ ${TARGETS.zipf_hit_ratio}: ${targets.zipf_hit_ratio.met ? "met" : "NOT met"}`],
    ["zipf_backend_share", String(figures.zipf_backend_share), `target ≤ ${TARGETS.zipf_backend_share}: ${targets.zipf_backend_share.met ? "met" : "NOT met"}`],
  ];
  for (const [mode, run] of Object.entries(edgeRuns)) rows.push([`  edge ${mode}`, String(run.edge.rps), `floor ${run.floor_rps} → ratio ${run.ratio}; cpu ratio ${run.cpu_ratio}`]);
  rows.push(["envoy_hit_rps", String(envoyFigures.envoy_hit_rps), `HTTP/1.1; ratio to floor ${envoyFigures.ratio_envoy_to_floor}, to the Node edge ${envoyFigures.ratio_envoy_to_node_edge}`]);
  rows.push(["peer_hit_rps", String(peerFigures.peer_hit_rps), `hand-written node:http + ioredis, HTTP/1.1; Node edge ${peerFigures.ratio_edge_h1_to_peer}×, Envoy ${peerFigures.ratio_envoy_to_peer}× of it`]);
  rows.push([
    "colocated_hit_rps",
    String(peerFigures.colocated_hit_rps),
    `edge + query in one process, in process, auth on: ${peerFigures.ratio_colocated_to_peer}× the peer (target ≥ ${TARGETS.ratio_colocated_to_peer}: ${targets.ratio_colocated_to_peer.met ? "met" : "NOT met"}); ${peerFigures.colocated_cpu_us_per_request} µs/req vs ${peerFigures.colocated_grpc_cpu_us_per_request} over gRPC in the same process (${peerFigures.colocated_grpc_hit_rps} req/s)`,
  ]);
  rows.push(["  cpu µs/req", "", `envoy ${envoyFigures.cpu_us_per_request.envoy} + query ${envoyFigures.cpu_us_per_request.query_behind_envoy}; node edge ${envoyFigures.cpu_us_per_request.node_edge} + query ${envoyFigures.cpu_us_per_request.query_behind_node_edge}`]);
  rows.push(["edge_hit_rps_auth_on", String(authFigures.edge_hit_rps_auth_on), "HTTP/1.1; bearer token at the edge, OPA policy + mesh table in the query"]);
  rows.push(["edge_hit_rps_auth_off", String(authFigures.edge_hit_rps_auth_off), "HTTP/1.1; mean of the runs before and after"]);
  rows.push(["ratio_auth_on_to_off", String(authRatio), `target ≥ ${TARGETS.ratio_auth_on_to_off}: ${targets.ratio_auth_on_to_off.met ? "met" : "NOT met"}`]);
  rows.push([
    "  auth cpu µs/req",
    "",
    `on ${authFigures.auth_cpu_us_per_request.on} (edge ${authFigures.auth_cpu_us_per_request.edge_on} + query ${authFigures.auth_cpu_us_per_request.query_on}), off ${authFigures.auth_cpu_us_per_request.off} (edge ${authFigures.auth_cpu_us_per_request.edge_off} + query ${authFigures.auth_cpu_us_per_request.query_off}); with Redis`,
  ]);
  rows.push([`  grpc cpu ratio`, String(grpcCpuRatio), `${grpcRun.cpuUsPerRequest} µs/req (query + Redis) vs floor ${results.supplementary.floor_grpc_cpu_us_per_request} µs/req`]);
  console.log("");
  console.log(`${"field".padEnd(22)} ${"value".padStart(10)}  note`);
  for (const [field, value, note] of rows) console.log(`${field.padEnd(22)} ${value.padStart(10)}  ${note}`);
  console.log(`\nload average ${results.machine.load.at_start.join(" / ")} at start, ${results.machine.load.at_end.join(" / ")} at end (${results.machine.cpus} cpus); ${results.duration_s} s`);
  console.log(`wrote ${RESULTS}`);
  await admin.quit();
}

/**
 * Fails unless the auth-on pair really authenticates and authorizes: no token → 401 with a
 * challenge, another tenant's token → 403, a token without entities:read → 403 MISSING_SCOPE (only
 * the QueryService's policy checks scopes), a direct call as mesh identity `query` → PERMISSION_DENIED
 * MESH_METHOD_DENIED (the mesh table), and the reader's token → the cached entity. Returns what it saw.
 */
async function proveAuthOn(
  edgePort: number,
  queryAddress: string,
  certsDir: string,
  tokens: { reader: string; otherTenant: string; noReadScope: string },
  expectedBody: Buffer,
): Promise<string[]> {
  const seen: string[] = [];
  const reasonOf = (body: Buffer) => /"reason"\s*:\s*"([A-Z_]+)"/.exec(body.toString())?.[1];
  const expect = async (what: string, headers: Record<string, string>, status: number, reason?: string) => {
    const answer = await httpGet(edgePort, REST_PATH, headers);
    const got = reasonOf(answer.body);
    if (answer.status !== status || (reason !== undefined && got !== reason)) {
      throw new Error(`auth on: ${what} answered ${answer.status} ${got ?? ""} (expected ${status}${reason ? ` ${reason}` : ""}): ${answer.body.toString().slice(0, 300)}`);
    }
    if (status === 401 && !/^Bearer /.test(answer.headers["www-authenticate"] ?? "")) throw new Error(`auth on: ${what} answered 401 without a Bearer challenge`);
    seen.push(`${what} → ${answer.status}${got ? ` ${got}` : ""}`);
    return answer;
  };
  await expect("no token", {}, 401);
  await expect("another tenant's token", { authorization: `Bearer ${tokens.otherTenant}` }, 403);
  await expect("a token without entities:read", { authorization: `Bearer ${tokens.noReadScope}` }, 403, "MISSING_SCOPE");
  const message = toBinary(GetEntityRequestSchema, create(GetEntityRequestSchema, { tenant: TENANT, type: TYPE, id: HOT_ID }));
  const direct = await grpcGet(queryAddress, message, clientCredentials(loadIdentity(certsDir, "query"))).then(
    () => undefined,
    (error: unknown) => RpcError.fromServiceError(error as Parameters<typeof RpcError.fromServiceError>[0]),
  );
  if (direct?.reason !== "MESH_METHOD_DENIED") throw new Error(`auth on: GetEntity as mesh identity query was ${direct ? `refused with ${direct.reason}` : "answered"}, not MESH_METHOD_DENIED`);
  seen.push(`GetEntity as mesh identity query → ${direct.reason}`);
  const ok = await expect("the reader's token", { authorization: `Bearer ${tokens.reader}` }, 200);
  if (!ok.body.equals(expectedBody) || !/^umw; hit/.test(ok.headers["cache-status"] ?? "")) {
    throw new Error(`auth on: the reader's GET is not the auth-off edge's cached entity (cache-status ${ok.headers["cache-status"]})`);
  }
  return seen;
}

function summary(run: Run) {
  return { rps: run.rps, requests: run.requests, p50_ms: run.p50Ms, p99_ms: run.p99Ms, cpu_pct: run.cpu, cpu_us_per_request: run.cpuUsPerRequest, load1: run.load1, command: run.command };
}

async function cleanup(): Promise<void> {
  adminRedis?.disconnect();
  await runningEnvoy?.stop().catch(() => undefined);
  await Promise.allSettled([...processes].reverse().map((server) => server.stop()));
  const redis = new Redis(infra.redisUrl, { maxRetriesPerRequest: 1, lazyConnect: true });
  await redis
    .connect()
    .then(() => deleteKeys(redis, keyPrefix))
    .catch(() => undefined)
    .finally(() => redis.disconnect());
  await db?.drop().catch((error: unknown) => console.error(`bench: cannot drop ${db?.name}: ${(error as Error).message}`));
  certs?.remove();
}

const bound = setTimeout(() => {
  console.error(`bench:read: not done after ${MAX_S} s; stopping`);
  for (const server of processes) server.kill();
  void cleanup().finally(() => process.exit(2));
}, MAX_S * 1000);
bound.unref();

// The forked servers inherit the tracing switch of this run.
Object.assign(process.env, tracingEnv());
if (runTracingVariants(fileURLToPath(import.meta.url), "read", (results) => {
  const { edge_hit_rps, edge_hit_p99_ms, grpc_hit_rps, envoy_hit_rps, ratio_edge_to_floor, ratio_grpc_to_floor, zipf_hit_ratio, ratio_auth_on_to_off } = results;
  return { edge_hit_rps, edge_hit_p99_ms, grpc_hit_rps, envoy_hit_rps, ratio_edge_to_floor, ratio_grpc_to_floor, zipf_hit_ratio, ratio_auth_on_to_off };
})) process.exit(0);
main()
  .then(
    () => cleanup().then(() => (process.exitCode = 0)),
    (error: unknown) => {
      console.error(`bench:read failed: ${(error as Error).stack ?? error}`);
      return cleanup().then(() => (process.exitCode = 1));
    },
  )
  .finally(() => clearTimeout(bound));
