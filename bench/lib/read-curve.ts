// The reads curve of `npm run bench:curves`: cached reads through the edge at several key counts
// (1k / 100k / 1M), with what one cached entry costs Redis in memory, against the same-run floor
// (bare node:http answering the edge's bytes) and the hand-written peer (node:http + ioredis,
// bench/lib/peer.ts) reading the same keys. Built from bench:read's parts (bench/lib/serve.ts roles,
// h2load, the auth-on wiring of bench/lib/auth.ts): authentication, the OPA policy, the mesh table
// and metrics are on, as under `umw serve`.
//
// The cache is filled directly, in the cache's own entry format (runtime/cache/entry.ts, as the
// QueryService writes an entry on a miss), 5,000 SETs a script call, and the peer's keys likewise as JSON:
// loading a million entries through misses would measure Postgres, not the read path. Every
// request must be a Redis hit (the QueryService's counters are checked), so the backend is never asked.
import { randomBytes } from "node:crypto";
import os from "node:os";
import { join } from "node:path";
import { create, toJson, type JsonValue } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Redis } from "ioredis";
import { EntitySchema, type Entity } from "../../gen/umw/v1/entity_pb.js";
import { encodeEntry, entityEntry } from "../../runtime/cache/entry.js";
import { cacheKey } from "../../runtime/cache/keys.js";
import { testCerts, type TestCerts } from "../../test/support/certs.js";
import { createTestDatabase, type TestDatabase } from "../../test/support/database.js";
import { benchToken } from "./auth.js";
import { ServerProcess } from "./children.js";
import { h2load, type LoadOptions, type LoadResult } from "./h2load.js";
import { scrape, sumOf } from "./prometheus.js";
import { Zipf } from "./zipf.js";
import { httpGet } from "./http-get.js";

export interface ReadCurveOptions {
  readonly redisUrl: string;
  /** Key counts, ascending: each point adds the keys it lacks to those of the previous one. */
  readonly sizes: readonly number[];
  readonly durationS: number;
  readonly warmupS: number;
  /** Unmeasured load on the edge (and the peer) before each point's runs. */
  readonly jitWarmupS: number;
  readonly clients: number;
  /** Zipf(1.1)-sampled paths h2load walks (each client the same list, in order). */
  readonly paths: number;
  readonly progress: (message: string) => void;
  /** Authentication at the edge and authorization in the QueryService (default on, as under `umw serve`). */
  readonly auth?: boolean;
}

export interface ReadRun {
  readonly rps: number;
  readonly p50_ms: number;
  readonly p99_ms: number;
  /** CPU time of the processes serving it (and Redis) per request, µs. */
  readonly cpu_us_per_op: number;
  readonly cpu_pct: Record<string, number>;
  readonly load1: number;
  readonly command: string;
}

export interface ReadPoint {
  readonly size: number;
  readonly umw: ReadRun & { readonly query_hits: number };
  readonly floor: ReadRun;
  readonly peer: ReadRun;
  readonly ratio_umw_to_floor: number;
  readonly ratio_umw_to_peer: number;
  readonly memory: {
    /** MEMORY USAGE of sampled keys, mean (key, value and Redis's per-key overhead). */
    readonly umw_entry_bytes_sampled: number;
    readonly peer_entry_bytes_sampled: number;
    /** Value length of one entry (STRLEN), mean of the sample. */
    readonly umw_value_bytes: number;
    readonly peer_value_bytes: number;
    /** INFO used_memory growth over the keys loaded so far / keys: includes whatever else the shared Redis did meanwhile. */
    readonly umw_used_memory_delta_per_entry: number;
    readonly peer_used_memory_delta_per_entry: number;
    readonly sampled_keys: number;
  };
  readonly load_s: number;
  readonly load1: number;
  readonly date: string;
}

const TENANT = "bench";
const TYPE = "item";
const ZIPF_S = 1.1;
const ZIPF_SEED = 20_251_203;
const TTL_MS = 2 * 60 * 60 * 1000;
const LOAD_BATCH = 5_000;
const LOADS_IN_FLIGHT = 4;
/** KEYS: the keys; ARGV: their values, then the PX of all. */
const SET_ALL = `local ttl = ARGV[#ARGV]
for i = 1, #KEYS do redis.call('SET', KEYS[i], ARGV[i], 'PX', ttl) end
return #KEYS`;
const MEMORY_SAMPLE = 200;

/** Ids wide enough for a million keys (bench/lib/dataset.ts's are five digits). */
const idOf = (rank: number) => `k${String(rank).padStart(7, "0")}`;
const restPath = (id: string) => `/v1/tenants/${TENANT}/types/${TYPE}/entities/${id}`;
const round = (value: number, digits = 2) => Math.round(value * 10 ** digits) / 10 ** digits;
const load1 = () => round(os.loadavg()[0]!);

/** The entity of a rank, the shape bench:read seeds (bench/lib/dataset.ts); `id` stands in for idOf(rank). */
function entityOf(rank: number, at: Date, id = idOf(rank)): Entity {
  return create(EntitySchema, {
    tenant: TENANT,
    type: TYPE,
    id,
    version: BigInt(1 + (rank % 7)),
    data: { name: `item ${id}`, price: Math.round((rank % 1000) * 1.25 * 100) / 100, stock: rank % 50, tags: ["bench", "zipf"], description: "x".repeat(64) },
    createTime: timestampFromDate(at),
    updateTime: timestampFromDate(at),
  });
}

/** Same width as idOf(rank): a stand-in that templates replace. */
const PLACEHOLDER = "kXXXXXXX";
/** Everything of an entity but its id repeats every VARIANTS ranks (version % 7, stock % 50, price % 1000). */
const VARIANTS = 7_000;

/**
 * Stored values of a rank, made from a template per variant with the id written in: encoding a
 * million protobuf entities (and as many JSON renderings) one by one takes minutes of CPU on a busy
 * 2-core machine; a copy and two 8-byte writes do not. Ids have a fixed width, so every length
 * prefix of the template holds. `check` compares the template's output with a direct encoding.
 */
class StoredValues {
  private readonly entries = new Map<number, { bytes: Buffer; offsets: number[] }>();
  private readonly json = new Map<number, string>();

  constructor(
    private readonly at: Date,
    private readonly times: { now: number; ttlMs: number; graceMs: number; loadMs: number },
  ) {}

  /** The cache entry (runtime/cache/entry.ts) the QueryService would store for this rank. */
  umw(rank: number): Buffer {
    const variant = rank % VARIANTS;
    let template = this.entries.get(variant);
    if (!template) {
      const bytes = this.encode(rank, PLACEHOLDER);
      const offsets: number[] = [];
      for (let at = bytes.indexOf(PLACEHOLDER, 0, "latin1"); at >= 0; at = bytes.indexOf(PLACEHOLDER, at + 1, "latin1")) offsets.push(at);
      template = { bytes, offsets };
      this.entries.set(variant, template);
    }
    const out = Buffer.from(template.bytes);
    for (const offset of template.offsets) out.write(idOf(rank), offset, "latin1");
    return out;
  }

  /** The JSON the edge renders for this rank (GetEntityResponse: the entity under "entity"), as the peer stores it. */
  peer(rank: number): string {
    const variant = rank % VARIANTS;
    let template = this.json.get(variant);
    if (template === undefined) {
      template = JSON.stringify({ entity: toJson(EntitySchema, entityOf(rank, this.at, PLACEHOLDER)) });
      this.json.set(variant, template);
    }
    return template.replaceAll(PLACEHOLDER, idOf(rank));
  }

  /** Fails unless the templates give what direct encoding gives, for these ranks. */
  check(ranks: readonly number[]): void {
    for (const rank of ranks) {
      if (!this.umw(rank).equals(this.encode(rank, idOf(rank)))) throw new Error(`reads: the templated cache entry of rank ${rank} differs from its direct encoding`);
      if (this.peer(rank) !== JSON.stringify({ entity: toJson(EntitySchema, entityOf(rank, this.at)) })) throw new Error(`reads: the templated JSON of rank ${rank} differs from its direct rendering`);
    }
  }

  private encode(rank: number, id: string): Buffer {
    return encodeEntry(entityEntry(entityOf(rank, this.at, id), this.times));
  }
}


async function redisCpuSeconds(redis: Redis): Promise<number> {
  const info = await redis.info("cpu");
  return Number(/used_cpu_user:([\d.]+)/.exec(info)?.[1] ?? 0) + Number(/used_cpu_sys:([\d.]+)/.exec(info)?.[1] ?? 0);
}

async function usedMemory(redis: Redis): Promise<number> {
  return Number(/used_memory:(\d+)/.exec(await redis.info("memory"))?.[1] ?? Number.NaN);
}

/** One h2load run and the CPU of `watched` (and Redis) meanwhile. */
async function measure(options: LoadOptions, watched: readonly ServerProcess[], redis?: Redis): Promise<ReadRun & LoadResult> {
  await Promise.all(watched.map((server) => server.markCpu()));
  const redisBefore = redis ? await redisCpuSeconds(redis) : 0;
  const started = performance.now();
  const result = await h2load(options);
  const seconds = (performance.now() - started) / 1000;
  const cpu: Record<string, number> = Object.fromEntries(await Promise.all(watched.map(async (server) => [server.name, await server.cpuSince()] as const)));
  if (redis) cpu.redis = Math.round((((await redisCpuSeconds(redis)) - redisBefore) / seconds) * 100);
  if (result.failed > 0 || result.requests === 0 || result.status["2xx"] < result.requests) {
    throw new Error(`${result.command}: ${result.failed} failed, ${result.status["2xx"]} 2xx of ${result.requests}`);
  }
  const busy = Object.values(cpu).reduce((sum, pct) => sum + pct, 0) / 100;
  return { ...result, p50_ms: result.p50Ms, p99_ms: result.p99Ms, cpu_pct: cpu, cpu_us_per_op: Math.round((busy * 1e6) / result.rps), load1: load1() };
}

const runOf = (run: ReadRun): ReadRun => ({ rps: run.rps, p50_ms: run.p50_ms, p99_ms: run.p99_ms, cpu_us_per_op: run.cpu_us_per_op, cpu_pct: run.cpu_pct, load1: run.load1, command: run.command });

export async function runReadCurve(options: ReadCurveOptions): Promise<{ points: ReadPoint[]; notes: string[] }> {
  const keyPrefix = `bench:curve:${randomBytes(4).toString("hex")}:`;
  const peerPrefix = `${keyPrefix}peer:`;
  const processes: ServerProcess[] = [];
  let certs: TestCerts | undefined;
  let db: TestDatabase | undefined;
  const redis = new Redis(options.redisUrl, { maxRetriesPerRequest: 1 });
  let loaded = 0;
  const spawn = async (name: string, spec: Parameters<typeof ServerProcess.start>[1]) => {
    const server = await ServerProcess.start(name, spec);
    processes.push(server);
    return server;
  };
  if (options.sizes.some((size) => size > 9_999_999)) throw new Error("reads: ids have 7 digits, so at most 9,999,999 keys");
  try {
    // An empty database: the QueryService needs a backend, but every request of the curve is a hit.
    [certs, db] = [testCerts(["query", "edge"]), await createTestDatabase({ replica: true })];
    const devKeysDir = join(certs.dir, "dev-issuer");
    const token = await benchToken(devKeysDir, TENANT, ["entities:read"]);
    const authorization = { authorization: `Bearer ${token}` };
    const auth = options.auth ?? true;
    const query = await spawn("query", { role: "query", certsDir: certs.dir, redisUrl: options.redisUrl, replicaUrl: db.replicaUrl, keyPrefix, types: [TYPE], authorization: auth });
    const edge = await spawn("edge", { role: "edge", certsDir: certs.dir, queryAddress: query.info.address!, devKeysDir: auth ? devKeysDir : undefined });
    const peer = await spawn("peer", { role: "peer", redisUrl: options.redisUrl, keyPrefix: peerPrefix });
    const baseMemory = await usedMemory(redis);
    options.progress(`reads: auth-on edge ${edge.info.url} → query (mTLS, OPA, mesh table) ${query.info.address}; peer :${peer.info.port}; Redis prefix ${keyPrefix}`);

    const at = new Date();
    const now = at.getTime();
    /**
     * Loads ranks from+1..to in one format, LOAD_BATCH keys a command (SET_ALL: one script call
     * instead of thousands of client-side commands, which cost more than Redis's work on a busy
     * machine), LOADS_IN_FLIGHT batches at a time, a progress line per 100k.
     */
    const loadKeys = async (from: number, to: number, keyOf: (rank: number) => string, valueOf: (rank: number) => Buffer | string, what: string) => {
      const inFlight = new Set<Promise<void>>();
      for (let start = from + 1; start <= to; start += LOAD_BATCH) {
        const done = Math.min(to, start + LOAD_BATCH - 1);
        const keys: string[] = [];
        const values: (Buffer | string)[] = [];
        for (let rank = start; rank <= done; rank++) {
          keys.push(keyOf(rank));
          values.push(valueOf(rank));
        }
        const batch: Promise<void> = redis.eval(SET_ALL, keys.length, ...keys, ...values, TTL_MS).then((count) => {
          inFlight.delete(batch);
          if (count !== keys.length) throw new Error(`loading ${what}: ${String(count)} of ${keys.length} keys set`);
          if (done === to || Math.floor(done / 100_000) > Math.floor((start - 1) / 100_000)) options.progress(`reads: ${what} ${done.toLocaleString("en-US")}/${to.toLocaleString("en-US")} loaded`);
        });
        inFlight.add(batch);
        if (inFlight.size >= LOADS_IN_FLIGHT) await Promise.race(inFlight);
      }
      await Promise.all(inFlight);
    };
    const values = new StoredValues(at, { now, ttlMs: TTL_MS, graceMs: 0, loadMs: 1 });
    values.check([1, 2, 6_999, 7_000, 7_001, 123_456, 999_999]);
    const umwKey = (rank: number) => cacheKey(keyPrefix, TENANT, TYPE, idOf(rank)).entry;
    const umwValue = (rank: number) => values.umw(rank);
    const peerKey = (rank: number) => `${peerPrefix}${TENANT}:${TYPE}:${idOf(rank)}`;
    const peerValue = (rank: number) => values.peer(rank);

    const points: ReadPoint[] = [];
    const notes: string[] = [];
    let umwMemory = 0;
    let peerMemory = 0;
    let floor: ServerProcess | undefined;
    for (const size of options.sizes) {
      const loadStarted = performance.now();
      const before = await usedMemory(redis);
      await loadKeys(loaded, size, umwKey, umwValue, "umw cache entries");
      const middle = await usedMemory(redis);
      await loadKeys(loaded, size, peerKey, peerValue, "peer JSON keys");
      const after = await usedMemory(redis);
      umwMemory += middle - before;
      peerMemory += after - middle;
      loaded = size;
      const loadS = round((performance.now() - loadStarted) / 1000, 1);

      const sampleRanks = Array.from({ length: Math.min(MEMORY_SAMPLE, size) }, (_, i) => 1 + Math.floor(((i + 0.5) * size) / Math.min(MEMORY_SAMPLE, size)));
      const sample = redis.pipeline();
      for (const rank of sampleRanks) sample.memory("USAGE", umwKey(rank)).strlen(umwKey(rank)).memory("USAGE", peerKey(rank)).strlen(peerKey(rank));
      const replies = ((await sample.exec()) ?? []).map(([error, value]) => (error ? Number.NaN : Number(value)));
      const meanOf = (offset: number) => round(sampleRanks.reduce((sum, _, i) => sum + replies[i * 4 + offset]!, 0) / sampleRanks.length, 1);
      const memory = {
        umw_entry_bytes_sampled: meanOf(0),
        peer_entry_bytes_sampled: meanOf(2),
        umw_value_bytes: meanOf(1),
        peer_value_bytes: meanOf(3),
        umw_used_memory_delta_per_entry: round(umwMemory / size, 1),
        peer_used_memory_delta_per_entry: round(peerMemory / size, 1),
        sampled_keys: sampleRanks.length,
      };
      options.progress(
        `reads: ${size.toLocaleString("en-US")} keys loaded in ${loadS} s; per entry: umw ${memory.umw_entry_bytes_sampled} B (MEMORY USAGE; value ${memory.umw_value_bytes} B), peer ${memory.peer_entry_bytes_sampled} B (value ${memory.peer_value_bytes} B); Redis used_memory +${Math.round((after - baseMemory) / 1024 / 1024)} MB`,
      );

      // The edge's answer for one key: the floor answers its bytes; the peer must hold the same JSON.
      const probe = await httpGet(edge.info.port, restPath(idOf(1)), authorization);
      if (probe.status !== 200 || !/^umw; hit/.test(probe.headers["cache-status"] ?? "")) throw new Error(`reads: GET ${restPath(idOf(1))} through the edge answered ${probe.status} (${probe.headers["cache-status"]}): ${probe.body.toString().slice(0, 300)}`);
      const peerProbe = await httpGet(peer.info.port, restPath(idOf(1)));
      const same = (a: Buffer, b: Buffer) => JSON.stringify(JSON.parse(a.toString()) as JsonValue) === JSON.stringify(JSON.parse(b.toString()) as JsonValue);
      if (peerProbe.status !== 200 || !same(probe.body, peerProbe.body)) {
        throw new Error(`reads: the peer answers other JSON than the edge:\n  edge ${probe.body.toString().slice(0, 300)}\n  peer ${peerProbe.body.toString().slice(0, 300)}`);
      }
      if (!floor) {
        const headers: Record<string, string> = {};
        for (const name of ["content-type", "cache-control", "etag", "cache-status"]) if (probe.headers[name] !== undefined) headers[name] = probe.headers[name]!;
        floor = await spawn("floor-http", { role: "floor-http", bodyBase64: probe.body.toString("base64"), headers });
      }

      const zipf = new Zipf(size, ZIPF_S, ZIPF_SEED + size);
      const paths = Array.from({ length: options.paths }, () => restPath(idOf(zipf.next())));
      const load = { http1: true, clients: options.clients, streams: 1, durationS: options.durationS, warmupS: options.warmupS } as const;
      const edgeUrl = `http://127.0.0.1:${edge.info.port}/`;
      const peerUrl = `http://127.0.0.1:${peer.info.port}/`;
      await h2load({ url: edgeUrl, ...load, paths, headers: authorization, durationS: options.jitWarmupS, warmupS: 0 });
      await h2load({ url: peerUrl, ...load, paths, durationS: options.jitWarmupS, warmupS: 0 });
      const floorRun = await measure({ url: `http://127.0.0.1:${floor.info.port}${restPath(idOf(1))}`, ...load }, [floor]);
      const hitsBefore = sumOf(await scrape(query.info.metricsUrl!), "umw_query_cache_hits_total");
      const missesBefore = sumOf(await scrape(query.info.metricsUrl!), "umw_query_cache_misses_total");
      const umwRun = await measure({ url: edgeUrl, ...load, paths, headers: authorization }, [edge, query], redis);
      const after2 = await scrape(query.info.metricsUrl!);
      const hits = sumOf(after2, "umw_query_cache_hits_total") - hitsBefore;
      const misses = sumOf(after2, "umw_query_cache_misses_total") - missesBefore;
      if (hits < umwRun.requests || misses > 0) throw new Error(`reads at ${size} keys: ${umwRun.requests} requests but query hits +${hits}, misses +${misses}`);
      const peerRun = await measure({ url: peerUrl, ...load, paths }, [peer], redis);
      const point: ReadPoint = {
        size,
        umw: { ...runOf(umwRun), query_hits: hits },
        floor: runOf(floorRun),
        peer: runOf(peerRun),
        ratio_umw_to_floor: round(umwRun.rps / floorRun.rps, 3),
        ratio_umw_to_peer: round(umwRun.rps / peerRun.rps, 3),
        memory,
        load_s: loadS,
        load1: load1(),
        date: new Date().toISOString(),
      };
      points.push(point);
      options.progress(
        `reads: ${size.toLocaleString("en-US")} keys: umw ${umwRun.rps} req/s (p50 ${umwRun.p50_ms} / p99 ${umwRun.p99_ms} ms, ${umwRun.cpu_us_per_op} µs CPU/req), peer ${peerRun.rps} req/s (${peerRun.cpu_us_per_op} µs/req), floor ${floorRun.rps} req/s`,
      );
    }
    notes.push(
      `reads: REST GET through the auth-on edge (bearer token of a dev issuer, UMW_AUTH_MODE=dev; the QueryService with the OPA policy and the mesh table; metrics on), HTTP/1.1 -c ${options.clients}, ${options.durationS} s after ${options.warmupS} s warm-up, over ${options.paths} paths sampled Zipf(s=${ZIPF_S}) from the point's keys (every h2load client walks the same list). ` +
        `Every request is a Redis hit (checked on the query's counters). The cache is filled directly with the cache's entry format (runtime/cache/entry.ts) by SET … PX, ${LOAD_BATCH} keys a script call; the peer's keys hold the entity as the edge renders it (JSON, checked equal). ` +
        `Memory per entry: MEMORY USAGE of ${MEMORY_SAMPLE} keys spread over the ranks (key, value and per-key overhead); the used_memory delta is the shared Redis's growth while loading, divided by the keys (others' writes fall in it). ` +
        "cpu_us_per_op: CPU time per request of edge + query + Redis (umw), peer + Redis (peer), the floor process alone (floor).",
    );
    return { points, notes };
  } finally {
    await Promise.allSettled(processes.reverse().map((server) => server.stop()));
    // Unlink exactly the keys loaded (faster than SCAN over a million).
    for (let start = 1; start <= loaded; start += LOAD_BATCH) {
      const pipeline = redis.pipeline();
      for (let rank = start; rank < Math.min(loaded + 1, start + LOAD_BATCH); rank++) {
        pipeline.unlink(cacheKey(keyPrefix, TENANT, TYPE, idOf(rank)).entry, `${peerPrefix}${TENANT}:${TYPE}:${idOf(rank)}`);
      }
      await pipeline.exec().catch(() => undefined);
    }
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${keyPrefix}*`, "COUNT", 1000).catch(() => ["0", [] as string[]] as const);
      cursor = next;
      if (keys.length > 0) await redis.unlink(...keys).catch(() => undefined);
    } while (cursor !== "0");
    redis.disconnect();
    await db?.drop().catch(() => undefined);
    certs?.remove();
  }
}
