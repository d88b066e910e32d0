// QueryService over grpc-js with mTLS, against real Redis and the real Postgres replica: the
// two-instance stampede, error answers, pagination, batches, cache-status headers, /metrics,
// and the service module built from config.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { Metadata } from "@grpc/grpc-js";
import pg from "pg";
import { QueryService } from "../../gen/umw/v1/query_pb.js";
import { createClient, type MeshClient } from "../../runtime/client.js";
import { loadConfig } from "../../runtime/config.js";
import { Code, RpcError } from "../../runtime/errors.js";
import { defaultRegistry, Registry, serveMetrics, valueOf } from "../../runtime/metrics.js";
import { OTHER_TENANTS } from "../../runtime/metric-labels.js";
import { realInfrastructure } from "../../runtime/infrastructure-real.js";
import { composeRuntime } from "../../services/compose.js";
import { databaseOnPool } from "../../runtime/sql.js";
import { ResourceCatalog } from "../../services/query/catalog.js";
import { queryService, startQueryServer, type QueryServer } from "../../services/query/index.js";
import { PostgresBackend } from "../../services/query/postgres-backend.js";
import { RedisCache } from "../../runtime/cache/redis-cache.js";
import { closedPort, CountingBackend, createTestDatabase, deleteKeys, log, REDIS_URL, testCertificates, unique, type TestDatabase } from "./helpers.js";
import { waitFor } from "../support/wait.js";

const TABLE = { table: "umw_entities", keyColumn: "id", tenantColumn: "tenant", versionColumn: "version", dataColumn: "data", typeColumn: "type" };
const TENANT = "acme";
/** The tenant label of TENANT's reads: tenants are folded into `_other` unless allow-listed. */
const TENANT_LABEL = OTHER_TENANTS;
const TYPE = "thing";
const prefix = `${unique("umwtest")}:`;

let db: TestDatabase;
let certs: ReturnType<typeof testCertificates>;
const servers: QueryServer[] = [];
const clients: MeshClient<typeof QueryService>[] = [];

/** One independent QueryService instance: its own Redis connections, pg pool, single-flight map, server. */
async function startInstance(metricsPort?: number) {
  const pool = new pg.Pool({ connectionString: db.replicaUrl, max: 4 });
  const backend = new CountingBackend(new PostgresBackend(databaseOnPool(pool), TABLE));
  const cache = await RedisCache.connect({ url: REDIS_URL, log });
  const registry = new Registry();
  const server = await startQueryServer({
    catalog: ResourceCatalog.of({ [TYPE]: { backend, policy: { leaseMs: 5_000 } }, tiny: { backend, policy: { negativeTtlMs: 60_000 } } }),
    cache,
    keyPrefix: prefix,
    credentials: certs.server,
    log,
    port: 0,
    registry,
    metricsPort,
    drainTimeoutMs: 1_000,
    owns: [cache, { close: () => pool.end() }],
  });
  servers.push(server);
  const client = createClient(QueryService, server.address, certs.client());
  clients.push(client);
  return { server, backend, registry, client };
}

let a: Awaited<ReturnType<typeof startInstance>>;
let b: Awaited<ReturnType<typeof startInstance>>;

before(async () => {
  certs = testCertificates();
  db = await createTestDatabase();
  a = await startInstance(0);
  b = await startInstance();
});

after(async () => {
  for (const client of clients) client.close();
  for (const server of servers) await server.stop();
  await db?.drop();
  await deleteKeys(prefix);
  certs?.remove();
});

function statusHeader(into: string[]) {
  return (headers: Metadata) => {
    const value = headers.get("umw-cache-status")[0];
    if (typeof value === "string") into.push(value);
  };
}

async function getCalls(pool: pg.Pool): Promise<number> {
  const { rows } = await pool.query<{ calls: string }>(
    `SELECT coalesce(sum(calls), 0)::text AS calls FROM pg_stat_statements
      WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND query LIKE 'SELECT %FROM "umw_entities"%' AND query LIKE '%"id" = $3%'`,
  );
  return Number(rows[0]!.calls);
}

test("stampede: 500 concurrent cold reads of one key across two instances make exactly one backend query", { timeout: 30_000 }, async () => {
  await db.insert(TENANT, TYPE, "hot-key", 7, { name: "hot" });
  await db.syncReplica();
  const callsBefore = await getCalls(db.replica);
  // The one load is held open until all 500 callers wait on it (on either instance), so that
  // every caller is provably cold, however slowly the client gets its calls out.
  let release!: () => void;
  a.backend.gate = b.backend.gate = new Promise<void>((resolve) => (release = resolve));
  const statuses: string[] = [];
  const calls = Promise.all(
    Array.from({ length: 500 }, (_, i) => (i % 2 ? a.client : b.client).getEntity({ tenant: TENANT, type: TYPE, id: "hot-key" }, { onHeaders: statusHeader(statuses) })),
  );
  const waiting = async () => (await valueOf(a.server.metrics.waiting, { tenant: TENANT_LABEL, type: TYPE })) + (await valueOf(b.server.metrics.waiting, { tenant: TENANT_LABEL, type: TYPE }));
  await waitFor(async () => (await waiting()) === 500, { what: "500 callers waiting on the load", timeoutMs: 20_000 });
  release();
  const results = await calls;
  a.backend.gate = b.backend.gate = undefined;
  assert.equal(await waiting(), 0);
  for (const { entity } of results) {
    assert.equal(entity?.version, 7n);
    assert.deepEqual(entity?.data, { name: "hot" });
  }
  assert.equal(a.backend.gets + b.backend.gets, 1, "one load through the adapters");
  assert.equal((await getCalls(db.replica)) - callsBefore, 1, "one query at the replica (pg_stat_statements)");
  assert.equal(statuses.length, 500);
  const counts = Object.fromEntries([...new Set(statuses)].map((s) => [s, statuses.filter((x) => x === s).length]));
  assert.deepEqual(counts, { "umw; fwd=miss; stored": 1, "umw; fwd=uri-miss; collapsed": 499 }, JSON.stringify(counts));
  // Both instances had waiters; the one that did not load waited on the other's announcement.
  const collapsedA = await valueOf(a.server.metrics.collapsed, { tenant: TENANT_LABEL, type: TYPE });
  const collapsedB = await valueOf(b.server.metrics.collapsed, { tenant: TENANT_LABEL, type: TYPE });
  assert.equal(collapsedA + collapsedB, 499);
  assert.ok(collapsedA >= 249 && collapsedB >= 249, `collapsed A=${collapsedA} B=${collapsedB}`);
  // Afterwards: hits with the remaining freshness.
  const hits: string[] = [];
  await b.client.getEntity({ tenant: TENANT, type: TYPE, id: "hot-key" }, { onHeaders: statusHeader(hits) });
  const ttl = Number(/^umw; hit; ttl=(\d+)$/.exec(hits[0]!)?.[1]);
  assert.ok(ttl >= 265 && ttl <= 330, `${hits[0]}: 300 s ±10%, minus the time since the fill`);
});

test("errors: unknown type, malformed names, missing entity, bad page token", async () => {
  const expectError = async (call: Promise<unknown>, code: Code, reason: string) =>
    assert.rejects(call, (e: unknown) => {
      assert.ok(e instanceof RpcError, String(e));
      assert.equal(Code[e.code], Code[code]);
      assert.equal(e.reason, reason);
      return true;
    });
  await expectError(a.client.getEntity({ tenant: TENANT, type: "unknown-type", id: "x" }), Code.NOT_FOUND, "UNKNOWN_RESOURCE_TYPE");
  await expectError(a.client.getEntity({ tenant: TENANT, type: TYPE, id: "bad id/../x" }), Code.INVALID_ARGUMENT, "INVALID_ID");
  await expectError(a.client.getEntity({ tenant: TENANT, type: TYPE, id: "" }), Code.INVALID_ARGUMENT, "INVALID_ID");
  await expectError(a.client.getEntity({ tenant: "ac:me", type: TYPE, id: "x" }), Code.INVALID_ARGUMENT, "INVALID_TENANT");
  await expectError(a.client.getEntity({ tenant: TENANT, type: "Bad_Type", id: "x" }), Code.INVALID_ARGUMENT, "INVALID_TYPE");
  await expectError(a.client.getEntity({ tenant: TENANT, type: TYPE, id: "x", minVersion: -1n }), Code.INVALID_ARGUMENT, "INVALID_MIN_VERSION");
  await expectError(a.client.getEntity({ tenant: TENANT, type: TYPE, id: "missing" }), Code.NOT_FOUND, "ENTITY_NOT_FOUND");
  await expectError(a.client.batchGetEntities({ tenant: TENANT, type: "nope", ids: ["a"] }), Code.NOT_FOUND, "UNKNOWN_RESOURCE_TYPE");
  await expectError(a.client.batchGetEntities({ tenant: TENANT, type: TYPE, ids: ["ok", "not ok"] }), Code.INVALID_ARGUMENT, "INVALID_ID");
  await expectError(a.client.listEntities({ tenant: TENANT, type: TYPE, pageToken: "garbage!" }), Code.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN");
  await expectError(a.client.listEntities({ tenant: TENANT, type: TYPE, pageToken: "AAAAAAAAAAAAAAAA" }), Code.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN");
  await expectError(a.client.listEntities({ tenant: TENANT, type: "unknown-type" }), Code.NOT_FOUND, "UNKNOWN_RESOURCE_TYPE");
  await expectError(a.client.listEntities({ tenant: TENANT, type: TYPE, pageSize: -5 }), Code.INVALID_ARGUMENT, "INVALID_PAGE_SIZE");
});

test("ListEntities: keyset pages are complete, ordered, scoped to tenant and type", async () => {
  const ids = Array.from({ length: 123 }, (_, i) => `item-${String(i).padStart(3, "0")}`);
  const values = ids.map((id, i) => `('pager', 'page', '${id}', ${i + 1}, '{"n": ${i}}')`).join(", ");
  await db.primary.query(`INSERT INTO umw_entities (tenant, type, id, version, data) VALUES ${values}`);
  await db.insert("other-tenant", "page", "item-000a", 1);
  await db.insert("pager", "other-type", "item-000a", 1);
  await db.syncReplica();
  const pool = new pg.Pool({ connectionString: db.replicaUrl, max: 1 });
  const cache = await RedisCache.connect({ url: REDIS_URL, log });
  const type = "page";
  // "page" is not configured on the running instances: its own instance serves it.
  const pager = await startQueryServer({
    catalog: ResourceCatalog.of({ [type]: { backend: new PostgresBackend(databaseOnPool(pool), TABLE) } }),
    cache,
    keyPrefix: prefix,
    credentials: certs.server,
    log,
    owns: [cache, { close: () => pool.end() }],
  });
  servers.push(pager);
  const pagerClient = createClient(QueryService, pager.address, certs.client());
  clients.push(pagerClient);

  const seen: string[] = [];
  const sizes: number[] = [];
  let token = "";
  const headers: string[] = [];
  do {
    const page = await pagerClient.listEntities({ tenant: "pager", type, pageSize: 50, pageToken: token }, { onHeaders: statusHeader(headers) });
    sizes.push(page.entities.length);
    seen.push(...page.entities.map((e) => e.id));
    for (const e of page.entities) assert.equal(e.data?.n, Number(e.id.slice(5)));
    token = page.nextPageToken;
  } while (token);
  assert.deepEqual(sizes, [50, 50, 23]);
  assert.deepEqual(seen, ids, "every entity once, in key order");
  assert.equal(headers[0], "umw; fwd=bypass");
  const firstDefault = await pagerClient.listEntities({ tenant: "pager", type });
  assert.equal(firstDefault.entities.length, 50, "page_size 0 means 50");
  const capped = await pagerClient.listEntities({ tenant: "pager", type, pageSize: 100_000 });
  assert.equal(capped.entities.length, 123);
  assert.equal(capped.nextPageToken, "");
  // A token from this list is refused by another tenant's list.
  const page1 = await pagerClient.listEntities({ tenant: "pager", type, pageSize: 10 });
  await assert.rejects(pagerClient.listEntities({ tenant: "other-tenant", type, pageToken: page1.nextPageToken }), (e: unknown) => e instanceof RpcError && e.reason === "INVALID_PAGE_TOKEN");
});

test("BatchGetEntities and cache-status headers", async () => {
  for (const id of ["b1", "b2", "b3"]) await db.insert(TENANT, TYPE, id, 2);
  await db.syncReplica();
  const headers: string[] = [];
  await a.client.getEntity({ tenant: TENANT, type: TYPE, id: "b1" });
  const batch = await a.client.batchGetEntities({ tenant: TENANT, type: TYPE, ids: ["b3", "nope", "b1", "b2", "b3"] }, { onHeaders: statusHeader(headers) });
  assert.deepEqual(batch.entities.map((e) => e.id), ["b3", "b1", "b2"]);
  assert.deepEqual(batch.missingIds, ["nope"]);
  assert.equal(headers[0], 'umw; fwd=partial; detail="hit=1 miss=3"');
  const again = await b.client.batchGetEntities({ tenant: TENANT, type: TYPE, ids: ["b1", "b2", "b3"] }, { onHeaders: statusHeader(headers) });
  assert.equal(again.entities.length, 3);
  assert.match(headers[1]!, /^umw; hit; ttl=\d+$/);
  // Negative hit and the header that goes with a NOT_FOUND.
  await assert.rejects(a.client.getEntity({ tenant: TENANT, type: "tiny", id: "ghost" }));
  await assert.rejects(b.client.getEntity({ tenant: TENANT, type: "tiny", id: "ghost" }), (e: unknown) => e instanceof RpcError && e.reason === "ENTITY_NOT_FOUND");
  assert.equal(await valueOf(b.server.metrics.negativeHits, { tenant: TENANT_LABEL, type: "tiny" }), 1);
});

test("metrics endpoint shows hits, misses, collapsed waiters, negative hits, backend latency", async () => {
  assert.ok(a.server.metricsUrl);
  const response = await fetch(a.server.metricsUrl);
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /^text\/plain; version=0.0.4/);
  const text = await response.text();
  const value = (name: string, labels: string) => Number(new RegExp(`^${name}\\{${labels.replace(/[{}]/g, "\\$&")}\\} (\\S+)$`, "m").exec(text)?.[1] ?? NaN);
  const byType = `tenant="${TENANT_LABEL}",type="${TYPE}"`;
  assert.equal(value("umw_query_cache_collapsed_total", byType), await valueOf(a.server.metrics.collapsed, { tenant: TENANT_LABEL, type: TYPE }));
  assert.ok(value("umw_query_cache_collapsed_total", byType) >= 249);
  assert.ok(value("umw_query_cache_misses_total", byType) >= 1);
  assert.ok(value("umw_query_cache_hits_total", `${byType},layer="redis"`) >= 1);
  assert.ok(value("umw_query_backend_duration_seconds_count", `${byType},backend="postgres",op="get",outcome="found"`) >= 1);
  assert.match(text, /^umw_query_backend_duration_seconds_bucket\{le="\+Inf",tenant="_other",type="thing",backend="postgres",op="batchGet",outcome="found"\} \d+$/m);
  for (const name of ["hits", "misses", "collapsed", "stale_served", "negative_hits", "early_refreshes", "fenced", "errors"]) {
    assert.match(text, new RegExp(`^# TYPE umw_query_cache_${name}_total counter$`, "m"));
  }
  assert.equal((await fetch(a.server.metricsUrl.replace("/metrics", "/other"))).status, 404);
});

test("queryService (umw serve query) builds from config: Redis, the replica, resources, metrics port", async () => {
  const [queryPort, metricsPort] = [await closedPort(), await closedPort()];
  const tenant = unique("svc").replace(/_/g, "-");
  await db.insert(tenant, "widget", "w1", 3, { color: "red" });
  await db.syncReplica();
  const config = loadConfig({
    UMW_CERTS_DIR: certs.dir,
    UMW_QUERY_PORT: String(queryPort),
    UMW_METRICS_PORT: String(metricsPort),
    UMW_REDIS_URL: REDIS_URL,
    UMW_PG_REPLICA_URL: db.replicaUrl,
    UMW_RESOURCES: JSON.stringify({ widget: {} }),
    UMW_DRAIN_TIMEOUT_MS: "1000",
    UMW_METRICS_TENANT_LABELS: tenant,
  });
  const infrastructure = realInfrastructure(config, log);
  const running = await queryService.start(await composeRuntime(config, log, infrastructure));
  const listener = await serveMetrics(config.metricsHost, config.metricsPort, defaultRegistry);
  const client = createClient(QueryService, `127.0.0.1:${queryPort}`, certs.client());
  try {
    const headers: string[] = [];
    const { entity } = await client.getEntity({ tenant, type: "widget", id: "w1" }, { onHeaders: statusHeader(headers) });
    assert.deepEqual(entity?.data, { color: "red" });
    assert.equal(headers[0], "umw; fwd=miss; stored");
    await assert.rejects(client.getEntity({ tenant, type: "thing", id: "w1" }), (e: unknown) => e instanceof RpcError && e.reason === "UNKNOWN_RESOURCE_TYPE");
    // The process's metrics listener (cli serve) serves the process registry; the allow-listed tenant has its own label.
    const text = await (await fetch(listener.url)).text();
    assert.match(text, new RegExp(`^umw_query_cache_misses_total\\{tenant="${tenant}",type="widget"\\} 1$`, "m"));
    assert.match(text, /^umw_query_cache_misses_total\{tenant="_other",type="widget"\} 0$/m);
  } finally {
    client.close();
    await running.stop();
    await listener.close();
    await infrastructure.close();
    await deleteKeys(`umw:${tenant}:`);
  }
});
