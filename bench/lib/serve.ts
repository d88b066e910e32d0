// Child process of the benchmark: runs one server (QueryService, the edge, or a floor) on its own
// event loop, so that it gets a core of its own like a deployed process, and answers the parent's
// commands over IPC: {cmd: "start", role, options} → info; "cpu" → process.cpuUsage(); "stop".
import { ServerCredentials, type ChannelOptions } from "@grpc/grpc-js";
import pg from "pg";
import { databaseOnPool } from "../../runtime/sql.js";
import { pino } from "pino";
import { QueryService } from "../../gen/umw/v1/query_pb.js";
import { Registry } from "../../runtime/metrics.js";
import { startTelemetry } from "../../runtime/telemetry.js";
import { clientCredentials, loadIdentity, serverCredentials } from "../../runtime/tls.js";
import { startEdge } from "../../services/edge/index.js";
import { edgeAuthFromConfig } from "../../services/edge/auth-config.js";
import { policyInterceptors } from "../../services/policy/index.js";
import { meshAuthorization } from "../../runtime/service.js";
import { InProcessTransport } from "../../runtime/in-process-transport.js";
import { authOnConfig } from "./auth.js";
import { PostgresBackend, RedisCache, ResourceCatalog, startQueryServer, type EntityReader } from "../../services/query/index.js";
import { entityId } from "./dataset.js";
import { bareGrpcServer, bareH2cServer, bareHttpServer } from "./floors.js";
import { handWrittenPeer } from "./peer.js";
import { Zipf } from "./zipf.js";
import { WindowProfiler } from "./window-profiler.js";

export interface QueryRole {
  readonly role: "query";
  /** mTLS with the `query` identity from this folder, or insecure (for h2load, which has no client certificate). */
  readonly certsDir?: string;
  readonly redisUrl: string;
  readonly replicaUrl: string;
  readonly keyPrefix: string;
  readonly types: readonly string[];
  readonly l1Ms?: number;
  /**
   * Authorization as `umw serve` wires it: the OPA policy interceptor and the mesh authorization
   * table on the MeshServer (bench/lib/auth.ts); default off (no interceptors, no table).
   */
  readonly authorization?: boolean;
}

export interface EdgeRole {
  readonly role: "edge";
  readonly certsDir?: string;
  readonly queryAddress: string;
  readonly channelOptions?: ChannelOptions;
  /** Bearer authentication with the dev issuer whose key is in this folder (bench/lib/auth.ts); default none. */
  readonly devKeysDir?: string;
}

/**
 * The edge and a QueryService in one process, as `umw serve all` runs them: the edge's calls go
 * in process (runtime/in-process-transport.ts), authentication and authorization on (the edge
 * verifies bearer tokens of the dev issuer in devKeysDir; the QueryService runs the mesh table and
 * the OPA policy).
 */
export interface ColocatedRole extends Omit<QueryRole, "role" | "authorization"> {
  readonly role: "colocated";
  readonly certsDir: string;
  readonly devKeysDir: string;
  /** false: the edge calls the QueryService over mTLS gRPC like a split deployment (same process). */
  readonly inProcess?: boolean;
  /** false: no bearer check at the edge, no policy or mesh table in the QueryService (what they cost); default true. */
  readonly auth?: boolean;
}

export interface FloorRole {
  readonly role: "floor-http" | "floor-h2c" | "floor-grpc";
  readonly bodyBase64: string;
  readonly headers: Record<string, string>;
  /** floor-grpc: the method path it answers. */
  readonly path?: string;
}

/** The hand-written peer (bench/lib/peer.ts): node:http + ioredis, what a user would write instead. */
export interface PeerRole {
  readonly role: "peer";
  readonly redisUrl: string;
  readonly keyPrefix: string;
}

export type RoleSpec = QueryRole | EdgeRole | ColocatedRole | FloorRole | PeerRole;

export interface Started {
  readonly port: number;
  readonly address?: string;
  readonly metricsUrl?: string;
  readonly h2cPort?: number;
  readonly url?: string;
}

const log = pino({ level: process.env.BENCH_LOG ?? "silent" });
const TABLE = { table: "umw_entities", keyColumn: "id", tenantColumn: "tenant", versionColumn: "version", dataColumn: "data", typeColumn: "type" };

let stop: (() => Promise<void>) | undefined;
let reader: EntityReader | undefined;
const profiler = new WindowProfiler();

/** Reads issued on this process's EntityReader (the query role): Zipf ranks → entity ids. */
export interface ZipfLoad {
  readonly tenant: string;
  readonly type: string;
  readonly keys: number;
  readonly s: number;
  readonly seed: number;
  readonly reads: number;
  readonly concurrency: number;
  /** Stop early after this long (the run stays bounded on a slow machine). */
  readonly maxMs: number;
}

export interface ZipfDone {
  readonly reads: number;
  readonly distinctKeys: number;
  readonly errors: number;
  readonly notFound: number;
  readonly ms: number;
  readonly stoppedEarly: boolean;
}

async function zipfLoad(load: ZipfLoad): Promise<ZipfDone> {
  if (!reader) throw new Error("zipf: this process runs no QueryService");
  const zipf = new Zipf(load.keys, load.s, load.seed);
  const seen = new Uint8Array(load.keys + 1);
  let issued = 0;
  let errors = 0;
  let notFound = 0;
  const started = performance.now();
  const until = started + load.maxMs;
  let stoppedEarly = false;
  const worker = async () => {
    while (issued < load.reads) {
      if (performance.now() > until) {
        stoppedEarly = true;
        return;
      }
      issued++;
      const rank = zipf.next();
      seen[rank] = 1;
      try {
        const result = await reader!.get({ tenant: load.tenant, type: load.type, id: entityId(rank) });
        if (!result.entity) notFound++;
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: load.concurrency }, worker));
  return { reads: issued, distinctKeys: seen.reduce((sum, flag) => sum + flag, 0), errors, notFound, ms: Math.round(performance.now() - started), stoppedEarly };
}

async function startQuery(spec: Omit<QueryRole, "role">, authorized: boolean, inProcess?: InProcessTransport) {
  const pool = new pg.Pool({ connectionString: spec.replicaUrl, max: 16, application_name: "umw-bench-query" });
  pool.on("error", () => undefined);
  const backend = new PostgresBackend(databaseOnPool(pool), TABLE);
  const cache = await RedisCache.connect({ url: spec.redisUrl, log });
  const authorization = authorized ? authOnConfig() : undefined;
  const catalog = ResourceCatalog.of(Object.fromEntries(spec.types.map((type) => [type, { backend, policy: spec.l1Ms ? { l1Ms: spec.l1Ms } : {} }])));
  return startQueryServer({
    catalog,
    cache,
    keyPrefix: spec.keyPrefix,
    credentials: spec.certsDir ? serverCredentials(loadIdentity(spec.certsDir, "query")) : ServerCredentials.createInsecure(),
    log,
    port: 0,
    metricsPort: 0,
    registry: new Registry(),
    drainTimeoutMs: 1_000,
    owns: [cache, { close: () => pool.end() }],
    inProcess,
    ...(authorization ? { interceptors: await policyInterceptors(authorization), authorization: meshAuthorization(authorization) } : {}),
  });
}

async function start(spec: RoleSpec): Promise<Started> {
  // The umw roles trace as `umw serve` would, when the bench's tracing switch says so (bench/lib/tracing.ts).
  if (spec.role === "query" || spec.role === "edge" || spec.role === "colocated") {
    startTelemetry({ otlpEndpoint: process.env.UMW_OTLP_ENDPOINT ?? "", traceSampleRatio: Number(process.env.UMW_TRACE_SAMPLE_RATIO ?? "1") }, `umw-bench-${spec.role}`);
  }
  switch (spec.role) {
    case "query": {
      const server = await startQuery(spec, spec.authorization ?? false);
      stop = () => server.stop();
      reader = server.reader;
      return { port: server.port, address: server.address, metricsUrl: server.metricsUrl };
    }
    case "colocated": {
      const transport = spec.inProcess === false ? undefined : new InProcessTransport(new Registry());
      const auth = spec.auth ?? true;
      const server = await startQuery(spec, auth, transport);
      reader = server.reader;
      const edge = await startEdge({
        auth: auth ? (await edgeAuthFromConfig(authOnConfig(spec.devKeysDir), log)).auth : { mode: "none" },
        port: 0,
        upstreams: [{ service: QueryService, address: server.address }],
        credentials: clientCredentials(loadIdentity(spec.certsDir, "edge")),
        inProcess: transport && { transport, peer: "edge" },
        drainTimeoutMs: 1_000,
        log,
      });
      stop = async () => {
        await edge.stop();
        await server.stop();
      };
      return { port: edge.port, url: edge.url, address: server.address, metricsUrl: server.metricsUrl };
    }
    case "edge": {
      // Without devKeysDir, the edge measures transcoding and the cache path: explicitly without authentication.
      const auth = spec.devKeysDir ? (await edgeAuthFromConfig(authOnConfig(spec.devKeysDir), log)).auth : ({ mode: "none" } as const);
      const edge = await startEdge({
        auth,
        port: 0,
        h2cPort: 0,
        upstreams: [{ service: QueryService, address: spec.queryAddress }],
        credentials: spec.certsDir ? clientCredentials(loadIdentity(spec.certsDir, "edge")) : (await import("@grpc/grpc-js")).credentials.createInsecure(),
        channelOptions: spec.channelOptions,
        // As `umw serve` reads it (runtime/config.ts): the bench measures either transport.
        upstreamClient: process.env.UMW_EDGE_UPSTREAM_CLIENT === "grpc-js" ? "grpc-js" : "lean",
        drainTimeoutMs: 1_000,
        log,
      });
      stop = () => edge.stop();
      return { port: edge.port, h2cPort: edge.h2cPort, url: edge.url };
    }
    case "peer": {
      const peer = await handWrittenPeer(spec.redisUrl, spec.keyPrefix);
      stop = () => peer.close();
      return { port: peer.port };
    }
    case "floor-http":
    case "floor-h2c":
    case "floor-grpc": {
      const body = Buffer.from(spec.bodyBase64, "base64");
      const floor =
        spec.role === "floor-http"
          ? await bareHttpServer(body, spec.headers)
          : spec.role === "floor-h2c"
            ? await bareH2cServer(body, spec.headers)
            : await bareGrpcServer(spec.path!, body, spec.headers);
      stop = () => floor.close();
      return { port: floor.port };
    }
  }
}

type Command =
  | { id: number; cmd: "start"; spec: RoleSpec }
  | { id: number; cmd: "zipf"; load: ZipfLoad }
  | { id: number; cmd: "cpu" }
  | { id: number; cmd: "profile-start"; intervalUs: number }
  | { id: number; cmd: "profile-stop"; file: string }
  | { id: number; cmd: "stop" };

process.on("message", (message: Command) => {
  const reply = (result: unknown, error?: unknown) =>
    process.send!({ id: message.id, ok: error === undefined, result, error: error === undefined ? undefined : String((error as Error)?.stack ?? error) });
  switch (message.cmd) {
    case "start":
      start(message.spec).then((started) => reply(started), (error: unknown) => reply(undefined, error));
      break;
    case "zipf":
      zipfLoad(message.load).then((done) => reply(done), (error: unknown) => reply(undefined, error));
      break;
    case "cpu":
      reply(process.cpuUsage());
      break;
    case "profile-start":
      profiler.start(message.intervalUs).then(() => reply(true), (error: unknown) => reply(undefined, error));
      break;
    case "profile-stop":
      profiler.stop(message.file).then(() => reply(message.file), (error: unknown) => reply(undefined, error));
      break;
    case "stop": {
      const bound = new Promise((resolve) => setTimeout(resolve, 3_000).unref());
      Promise.race([stop?.(), bound])
        .catch(() => undefined)
        .finally(() => {
          reply(true);
          // process.exit writes the --cpu-prof profile, when one was asked for.
          setImmediate(() => process.exit(0));
        });
      break;
    }
  }
});
process.on("disconnect", () => process.exit(0));
