// npm run bench:profile-read — the read path's cache-hit legs only, with a V8 CPU profile of each
// umw process taken over just the measured window (bench/lib/window-profiler.ts), summarised as text
// (bench/lib/profile-summary.ts): the REST GET through the auth-on edge + QueryService pair (as
// bench:read's auth leg: bearer token, OPA policy, mesh table, metrics), the hand-written peer on the
// same load, and GetEntity straight to a QueryService beside the grpc-js floor (as bench:read's grpc leg).
// About 40 s. Writes <BENCH_PROFILE_DIR>/{rest-edge,rest-query,grpc-query}.{cpuprofile,txt} and summary.json.
//
// Knobs: BENCH_PROFILE_DIR (bench/results/profiles/latest), BENCH_DURATION_S (5), BENCH_JIT_WARMUP_S (3),
// BENCH_H1_CLIENTS (64), BENCH_H2_CLIENTS (4), BENCH_H2_STREAMS (32), BENCH_PROFILE_INTERVAL_US (250),
// BENCH_PROFILE_AUTH (on; off: the REST leg through an auth-off pair); UMW_EDGE_UPSTREAM_CLIENT (grpc-js; lean:
// the edge's unary calls on the lean node:http2 transport, runtime/http2-unary-transport.ts).
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync, readFileSync } from "node:fs";
import { request } from "node:http";
import os from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { create, toBinary } from "@bufbuild/protobuf";
import { Client, credentials, Metadata } from "@grpc/grpc-js";
import { Redis } from "ioredis";
import { GetEntityRequestSchema } from "../gen/umw/v1/query_pb.js";
import { testCerts, type TestCerts } from "../test/support/certs.js";
import { createTestDatabase, type TestDatabase } from "../test/support/database.js";
import { infra } from "../test/support/env.js";
import { benchToken } from "./lib/auth.js";
import { ServerProcess } from "./lib/children.js";
import { entityId, seedEntities } from "./lib/dataset.js";
import { grpcFrame, h2load, type LoadOptions } from "./lib/h2load.js";
import { seedPeer } from "./lib/peer.js";
import { formatSummary, summarize } from "./lib/profile-summary.js";
import { scrape, sumOf } from "./lib/prometheus.js";

const env = (name: string, fallback: number) => (process.env[name] ? Number(process.env[name]) : fallback);
const DURATION_S = env("BENCH_DURATION_S", 5);
const JIT_WARMUP_S = env("BENCH_JIT_WARMUP_S", 3);
const H1_CLIENTS = env("BENCH_H1_CLIENTS", 64);
const H2_CLIENTS = env("BENCH_H2_CLIENTS", 4);
const H2_STREAMS = env("BENCH_H2_STREAMS", 32);
const INTERVAL_US = env("BENCH_PROFILE_INTERVAL_US", 250);
/** `off`: the REST leg through an auth-off pair (no token, no policy, no mesh table), as bench:read's edge phase. */
const AUTH = process.env.BENCH_PROFILE_AUTH !== "off";
const UPSTREAM_CLIENT = process.env.UMW_EDGE_UPSTREAM_CLIENT === "grpc-js" ? "grpc-js" : "lean";
const OUT = process.env.BENCH_PROFILE_DIR ?? join(dirname(fileURLToPath(import.meta.url)), "results", "profiles", "latest");

const TENANT = "bench";
const TYPE = "item";
const HOT_ID = entityId(1);
const REST_PATH = `/v1/tenants/${TENANT}/types/${TYPE}/entities/${HOT_ID}`;
const GRPC_PATH = "/umw.v1.QueryService/GetEntity";
const keyPrefix = `bench:${randomBytes(4).toString("hex")}:`;
const processes: ServerProcess[] = [];
let db: TestDatabase | undefined;
let certs: TestCerts | undefined;

const load1 = () => Math.round(os.loadavg()[0]! * 100) / 100;

async function spawn(name: string, spec: Parameters<typeof ServerProcess.start>[1]): Promise<ServerProcess> {
  const server = await ServerProcess.start(name, spec);
  processes.push(server);
  return server;
}

const hits = async (server: ServerProcess) => sumOf(await scrape(server.info.metricsUrl!), "umw_query_cache_hits_total");

/** One measured h2load run with the CPU of `watched` (% of one core) and, when `profiled`, their profiles of the window. */
async function measured(label: string, options: LoadOptions, watched: readonly ServerProcess[], profiled: readonly ServerProcess[] = []) {
  await Promise.all(watched.map((server) => server.markCpu()));
  await Promise.all(profiled.map((server) => server.profileStart(INTERVAL_US)));
  const result = await h2load(options);
  await Promise.all(profiled.map((server) => server.profileStop(join(OUT, `${label}-${server.name}.cpuprofile`))));
  const cpu = Object.fromEntries(await Promise.all(watched.map(async (server) => [server.name, await server.cpuSince()] as const)));
  if (result.failed > 0 || result.requests === 0) throw new Error(`${label}: ${result.failed} failed of ${result.requests + result.failed}`);
  const usPerRequest = Object.fromEntries(Object.entries(cpu).map(([name, pct]) => [name, Math.round(((pct / 100) * 1e6) / result.rps)]));
  const run = { rps: result.rps, requests: result.requests, p50_ms: result.p50Ms, p99_ms: result.p99Ms, cpu_pct: cpu, cpu_us_per_request: usPerRequest, load1: load1(), command: result.command.replace(/Bearer [\w.-]+/g, "Bearer <token>") };
  console.log(`${label.padEnd(10)} ${result.rps.toLocaleString("en-US")} req/s, p99 ${result.p99Ms} ms, cpu µs/req ${JSON.stringify(usPerRequest)} (load ${run.load1})`);
  for (const server of profiled) {
    const text = formatSummary(`${label}: ${server.name} (${result.requests} requests in the window)`, summarize(JSON.parse(readFileSync(join(OUT, `${label}-${server.name}.cpuprofile`), "utf8"))), result.requests);
    writeFileSync(join(OUT, `${label}-${server.name}.txt`), text);
  }
  return run;
}

function httpGet(port: number, path: string, headers: Record<string, string>): Promise<{ status: number; cacheStatus: string | undefined; body: Buffer }> {
  return new Promise((resolve, reject) => {
    request({ host: "127.0.0.1", port, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode!, cacheStatus: res.headers["cache-status"] as string | undefined, body: Buffer.concat(chunks) }));
    })
      .on("error", reject)
      .end();
  });
}

function grpcGet(address: string, message: Uint8Array): Promise<{ response: Buffer; cacheStatus: string }> {
  const client = new Client(address, credentials.createInsecure());
  return new Promise((resolve, reject) => {
    let cacheStatus = "";
    const call = client.makeUnaryRequest(GRPC_PATH, (value: Buffer) => value, (value: Buffer) => value, Buffer.from(message), new Metadata(), { deadline: Date.now() + 5_000 }, (error, response) => {
      client.close();
      if (error) reject(error);
      else resolve({ response: response!, cacheStatus });
    });
    call.on("metadata", (metadata: Metadata) => (cacheStatus = String(metadata.get("umw-cache-status")[0] ?? "")));
  });
}

async function main(): Promise<void> {
  mkdirSync(OUT, { recursive: true });
  const loadStart = os.loadavg().map((value) => Math.round(value * 100) / 100);
  certs = testCerts(["query", "edge"]);
  db = await createTestDatabase({ replica: true });
  await seedEntities(db.url, db.replicaUrl, TENANT, TYPE, 16);
  const queryBase = { redisUrl: infra.redisUrl, replicaUrl: db.replicaUrl, keyPrefix, types: [TYPE] };
  const devKeysDir = join(certs.dir, "dev-issuer");
  const token = await benchToken(devKeysDir, TENANT, ["entities:read"]);
  const query = await spawn("query", { role: "query", certsDir: certs.dir, ...queryBase, authorization: AUTH });
  const edge = await spawn("edge", { role: "edge", certsDir: certs.dir, queryAddress: query.info.address!, ...(AUTH ? { devKeysDir } : {}) });
  const headers: Record<string, string> = AUTH ? { authorization: `Bearer ${token}` } : {};
  await httpGet(edge.info.port, REST_PATH, headers);
  const sample = await httpGet(edge.info.port, REST_PATH, headers);
  if (sample.status !== 200 || !/^umw; hit/.test(sample.cacheStatus ?? "")) throw new Error(`GET ${REST_PATH}: ${sample.status} ${sample.cacheStatus}`);

  // REST through the auth-on pair.
  const h1 = { http1: true, clients: H1_CLIENTS, streams: 1, headers };
  const restUrl = `http://127.0.0.1:${edge.info.port}${REST_PATH}`;
  await h2load({ url: restUrl, ...h1, durationS: JIT_WARMUP_S, warmupS: 0 });
  const hitsBefore = await hits(query);
  const rest = await measured("rest", { url: restUrl, ...h1, durationS: DURATION_S, warmupS: 1 }, [edge, query], [edge, query]);
  const restHits = (await hits(query)) - hitsBefore;
  if (restHits < rest.requests) throw new Error(`rest: ${rest.requests} requests, but ${restHits} query cache hits`);

  // The hand-written peer on the same load (no token needed; it checks none).
  const peerPrefix = `${keyPrefix}peer:`;
  await seedPeer(infra.redisUrl, peerPrefix, TENANT, TYPE, HOT_ID, sample.body);
  const peer = await spawn("peer", { role: "peer", redisUrl: infra.redisUrl, keyPrefix: peerPrefix });
  const peerUrl = `http://127.0.0.1:${peer.info.port}${REST_PATH}`;
  await h2load({ url: peerUrl, ...h1, durationS: JIT_WARMUP_S, warmupS: 0 });
  const peerRun = await measured("peer", { url: peerUrl, ...h1, durationS: DURATION_S, warmupS: 1 }, [peer]);
  for (const server of [peer, edge, query]) await server.stop();

  // GetEntity straight to a QueryService (insecure: h2load has no client certificate), and the grpc-js floor.
  const grpcQuery = await spawn("query", { role: "query", ...queryBase });
  const message = toBinary(GetEntityRequestSchema, create(GetEntityRequestSchema, { tenant: TENANT, type: TYPE, id: HOT_ID }));
  const exact = await grpcGet(grpcQuery.info.address!, message);
  if (!/^umw; hit/.test(exact.cacheStatus)) throw new Error(`GetEntity: ${exact.cacheStatus}`);
  const floor = await spawn("floor-grpc", { role: "floor-grpc", path: GRPC_PATH, bodyBase64: exact.response.toString("base64"), headers: { "umw-cache-status": exact.cacheStatus } });
  const grpcLoad = { body: grpcFrame(message), headers: { "content-type": "application/grpc", te: "trailers" }, clients: H2_CLIENTS, streams: H2_STREAMS };
  await h2load({ url: `http://127.0.0.1:${grpcQuery.info.port}${GRPC_PATH}`, ...grpcLoad, durationS: JIT_WARMUP_S, warmupS: 0 });
  await h2load({ url: `http://127.0.0.1:${floor.info.port}${GRPC_PATH}`, ...grpcLoad, durationS: 1, warmupS: 0 });
  const grpcHitsBefore = await hits(grpcQuery);
  const grpc = await measured("grpc", { url: `http://127.0.0.1:${grpcQuery.info.port}${GRPC_PATH}`, ...grpcLoad, durationS: DURATION_S, warmupS: 1 }, [grpcQuery], [grpcQuery]);
  if ((await hits(grpcQuery)) - grpcHitsBefore < grpc.requests) throw new Error("grpc: not every request was a cache hit");
  const floorRun = await measured("grpc-floor", { url: `http://127.0.0.1:${floor.info.port}${GRPC_PATH}`, ...grpcLoad, durationS: DURATION_S, warmupS: 1 }, [floor]);

  const summary = {
    command: `${AUTH ? "" : "BENCH_PROFILE_AUTH=off "}${UPSTREAM_CLIENT === "lean" ? "UMW_EDGE_UPSTREAM_CLIENT=lean " : ""}npm run bench:profile-read`,
    auth: AUTH,
    edge_upstream_client: UPSTREAM_CLIENT,
    generated_at: new Date().toISOString(),
    rest_hit_rps: rest.rps,
    peer_rps: peerRun.rps,
    ratio_rest_to_peer: Math.round((rest.rps / peerRun.rps) * 1000) / 1000,
    grpc_hit_rps: grpc.rps,
    grpc_floor_rps: floorRun.rps,
    ratio_grpc_to_floor: Math.round((grpc.rps / floorRun.rps) * 1000) / 1000,
    runs: { rest, peer: peerRun, grpc, grpc_floor: floorRun },
    load: { at_start: loadStart, at_end: os.loadavg().map((value) => Math.round(value * 100) / 100), cpus: os.cpus().length },
  };
  writeFileSync(join(OUT, "summary.json"), JSON.stringify(summary, null, 2) + "\n");
  console.log(`REST hit ${rest.rps} req/s = ${summary.ratio_rest_to_peer}× the peer (${peerRun.rps}); gRPC hit ${grpc.rps} = ${summary.ratio_grpc_to_floor} of the grpc-js floor (${floorRun.rps}); load ${summary.load.at_start.join("/")} → ${summary.load.at_end.join("/")}; wrote ${OUT}`);
}

async function cleanup(): Promise<void> {
  await Promise.allSettled(processes.map((server) => server.stop()));
  const redis = new Redis(infra.redisUrl, { maxRetriesPerRequest: 1 });
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${keyPrefix}*`, "COUNT", 1000);
    cursor = next;
    if (keys.length > 0) await redis.del(...keys);
  } while (cursor !== "0");
  redis.disconnect();
  await db?.drop().catch(() => undefined);
  certs?.remove();
}

main().then(
  () => cleanup(),
  (error: unknown) => {
    console.error(`bench:profile-read failed: ${(error as Error).stack ?? error}`);
    process.exitCode = 1;
    return cleanup();
  },
);
