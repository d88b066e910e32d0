// The edge on the lean unary transport (UMW_EDGE_UPSTREAM_CLIENT=lean) in front of the real
// QueryService over mTLS (Redis, the Postgres replica), over real HTTP: reads and their cache
// status, ErrorInfo reasons passing through, the upstream's identity checked, a dead upstream
// (UNAVAILABLE with ErrorInfo, reads retried), a deadline. The rest of test/edge runs on the lean
// transport with UMW_EDGE_UPSTREAM_CLIENT=lean (test/support/edge-upstream-client.ts).
//
//   node --import tsx --test test/edge/lean-upstream.test.ts
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server, type Socket } from "node:net";
import pg from "pg";
import { CommandService } from "../../gen/umw/v1/command_pb.js";
import { QueryService } from "../../gen/umw/v1/query_pb.js";
import type { ServerInterceptor } from "../../runtime/interceptor.js";
import { RedisCache } from "../../runtime/cache/redis-cache.js";
import { DEFAULT_MESH_AUTHZ, MeshAuthorization } from "../../runtime/mesh-authorization.js";
import { USER_AGENT } from "../../runtime/http2-unary-transport.js";
import { databaseOnPool } from "../../runtime/sql.js";
import { clientCredentials, serverCredentials } from "../../runtime/tls.js";
import { startEdge, type RunningEdge } from "../../services/edge/index.js";
import { ResourceCatalog } from "../../services/query/catalog.js";
import { startQueryServer, type QueryServer } from "../../services/query/index.js";
import { PostgresBackend } from "../../services/query/postgres-backend.js";
import { testCerts, type TestCerts } from "../support/certs.js";
import { freePort } from "../support/ports.js";
import { createTestDatabase, deleteKeys, log, REDIS_URL, unique, type TestDatabase } from "../query/helpers.js";
import { startFixture, type Fixture } from "./fixtures.js";

const TABLE = { table: "umw_entities", keyColumn: "id", tenantColumn: "tenant", versionColumn: "version", dataColumn: "data", typeColumn: "type" };
const prefix = `${unique("umwlean")}:`;

let certs: TestCerts;
let db: TestDatabase;
let query: QueryServer;
/** The user-agent of every call the real QueryService served. */
const agents: string[] = [];
const edges: RunningEdge[] = [];

before(async () => {
  certs = testCerts(["query", "edge"]);
  db = await createTestDatabase();
  await db.insert("acme", "todo", "t1", 3, { title: "buy milk" });
  await db.syncReplica();
  const pool = new pg.Pool({ connectionString: db.replicaUrl, max: 4 });
  const cache = await RedisCache.connect({ url: REDIS_URL, log });
  const recordAgent: ServerInterceptor = (next) => (req) => {
    agents.push(req.context.headers["user-agent"] ?? "");
    return next(req);
  };
  query = await startQueryServer({
    catalog: ResourceCatalog.of({ todo: { backend: new PostgresBackend(databaseOnPool(pool), TABLE) } }),
    cache,
    keyPrefix: prefix,
    credentials: serverCredentials(certs.identity("query")),
    log,
    interceptors: [recordAgent],
    authorization: new MeshAuthorization(DEFAULT_MESH_AUTHZ, ["edge"]),
    drainTimeoutMs: 200,
    owns: [cache, { close: () => pool.end() }],
  });
});

after(async () => {
  await Promise.all(edges.map((edge) => edge.stop()));
  await query?.stop();
  await db?.drop();
  await deleteKeys(prefix);
  certs?.remove();
});

/** An edge on the lean transport toward `address`, expecting the upstream to be the mesh identity `peer`. */
async function leanEdge(address: string, { peer = "query", timeoutMs = 5_000, retryAttempts = 3 } = {}): Promise<string> {
  const edge = await startEdge({
    auth: { mode: "none" },
    port: 0,
    upstreams: [{ service: QueryService, address, credentials: clientCredentials(certs.identity("edge"), peer) }],
    credentials: clientCredentials(certs.identity("edge")),
    upstreamClient: "lean",
    timeoutMs,
    resilience: { retryAttempts, retryInitialDelayMs: 5, retryMaxDelayMs: 20, breakerFailures: 100 },
    log,
    drainTimeoutMs: 200,
  });
  edges.push(edge);
  return edge.url;
}

const entity = (id: string) => `/v1/tenants/acme/types/todo/entities/${id}`;

async function problem(response: Response): Promise<{ code: number; reason: string; metadata: Record<string, string> }> {
  const body = (await response.json()) as { code: number; details: { reason: string; metadata: Record<string, string> }[] };
  return { code: body.code, reason: body.details[0]!.reason, metadata: body.details[0]!.metadata };
}

describe("the edge on the lean transport, real QueryService over mTLS", () => {
  test("a read: 200 with the entity and its ETag, a miss then a hit (Cache-Status passes through), carried by the lean transport", async () => {
    const url = await leanEdge(query.address);
    const before = agents.length;
    const first = await fetch(url + entity("t1"));
    assert.equal(first.status, 200, await first.clone().text());
    assert.equal(first.headers.get("etag"), 'W/"3"');
    assert.match(first.headers.get("cache-status") ?? "", /fwd=/);
    const body = (await first.json()) as { entity: { id: string; data: { title: string } } };
    assert.equal(body.entity.data.title, "buy milk");
    const second = await fetch(url + entity("t1"));
    assert.equal(second.status, 200);
    assert.match(second.headers.get("cache-status") ?? "", /; hit/);
    assert.deepEqual(agents.slice(before), [USER_AGENT, USER_AGENT], "both calls came over the lean transport");
  });

  test("a missing entity: 404 with the service's ErrorInfo reason and metadata", async () => {
    const url = await leanEdge(query.address);
    const response = await fetch(url + entity("nope"));
    assert.equal(response.status, 404);
    const { code, reason } = await problem(response);
    assert.equal(code, 5);
    assert.equal(reason, "ENTITY_NOT_FOUND");
  });

  test("an upstream whose certificate names another identity is not talked to: 503 UPSTREAM_UNAVAILABLE", async () => {
    const url = await leanEdge(query.address, { peer: "command", retryAttempts: 1 });
    const before = agents.length;
    const response = await fetch(url + entity("t1"));
    assert.equal(response.status, 503);
    assert.equal((await problem(response)).reason, "UPSTREAM_UNAVAILABLE");
    assert.equal(agents.length, before, "no call reached the service");
  });
});

describe("the edge on the lean transport, a dead upstream", () => {
  let dropper: Server;
  let dropperAddress: string;
  let connections = 0;

  before(async () => {
    // Accepts connections and drops them at once: each attempt of a call is one connection.
    dropper = createServer((socket: Socket) => {
      connections++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => dropper.listen(0, "127.0.0.1", resolve));
    const address = dropper.address();
    dropperAddress = `127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
  });

  after(() => new Promise<void>((resolve) => dropper.close(() => resolve())));

  test("nothing listening: 503 with ErrorInfo UPSTREAM_UNAVAILABLE naming the service", async () => {
    const url = await leanEdge(`127.0.0.1:${await freePort()}`);
    const response = await fetch(url + entity("t1"));
    assert.equal(response.status, 503);
    const { code, reason, metadata } = await problem(response);
    assert.equal(code, 14);
    assert.equal(reason, "UPSTREAM_UNAVAILABLE");
    assert.equal(metadata.service, "umw.v1.QueryService");
  });

  test("connections dropped: a read is tried as often as the retry setting allows (one connection each), then 503", async () => {
    const url = await leanEdge(dropperAddress, { retryAttempts: 3 });
    const before = connections;
    const response = await fetch(url + entity("t1"));
    assert.equal(response.status, 503);
    assert.equal((await problem(response)).reason, "UPSTREAM_UNAVAILABLE");
    assert.equal(connections - before, 3);
  });

  test("writes are not retried: one connection, then 503", async () => {
    const edge = await startEdge({
      auth: { mode: "none" },
      port: 0,
      upstreams: [{ service: CommandService, address: dropperAddress, credentials: clientCredentials(certs.identity("edge"), "command") }],
      credentials: clientCredentials(certs.identity("edge")),
      upstreamClient: "lean",
      resilience: { retryAttempts: 3, retryInitialDelayMs: 5, retryMaxDelayMs: 20 },
      log,
      drainTimeoutMs: 200,
    });
    edges.push(edge);
    const before = connections;
    const response = await fetch(`${edge.url}/v1/tenants/acme/types/todo/entities`, {
      method: "POST",
      headers: { "content-type": "application/json", "idempotency-key": '"k-lean-dead"' },
      body: JSON.stringify({ title: "x" }),
    });
    assert.equal(response.status, 503);
    assert.equal((await problem(response)).reason, "UPSTREAM_UNAVAILABLE");
    assert.equal(connections - before, 1);
  });
});

describe("the edge on the lean transport, deadlines and fixture upstreams", () => {
  let fx: Fixture;
  before(async () => {
    fx = await startFixture({ upstreamClient: "lean" });
  });
  after(() => fx?.close());

  test("an upstream slower than the edge's deadline: 504 UPSTREAM_TIMEOUT at the deadline, not when the upstream answers", async () => {
    const edge = await fx.startEdge({ timeoutMs: 300, upstreamClient: "lean" });
    const started = Date.now();
    const response = await fetch(`${edge.url}/v1/tenants/t1/types/book/entities/slow`);
    const took = Date.now() - started;
    assert.equal(response.status, 504);
    assert.equal((await problem(response)).reason, "UPSTREAM_TIMEOUT");
    assert.ok(took >= 280 && took < 1_500, `answered after ${took} ms`);
  });

  test("the service's own failures keep their code, reason, metadata and trailers", async () => {
    const missing = await fetch(`${fx.url}/v1/tenants/t1/types/book/entities/missing`);
    assert.equal(missing.status, 404);
    assert.equal(missing.headers.get("cache-status"), "umw; hit; detail=negative");
    const { reason, metadata } = await problem(missing);
    assert.equal(reason, "ENTITY_NOT_FOUND");
    assert.deepEqual(metadata, { type: "book", id: "missing" });
    assert.equal(fx.last("GetEntity").headers["user-agent"], USER_AGENT);

    const conflict = await fetch(`${fx.url}/v1/tenants/t1/types/book/entities/conflict`, {
      method: "PUT",
      headers: { "content-type": "application/json", "idempotency-key": '"k-lean-1"' },
      body: JSON.stringify({ name: "x" }),
    });
    assert.equal(conflict.status, 409);
    assert.equal((await problem(conflict)).reason, "VERSION_CONFLICT");
    assert.equal(fx.last("UpdateEntity").headers["user-agent"], USER_AGENT);
  });
});
