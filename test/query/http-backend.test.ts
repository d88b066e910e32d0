// The upstream HTTP backend against a real local node:http server, through the reader (real
// Redis) and through QueryService over mTLS gRPC.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { QueryService } from "../../gen/umw/v1/query_pb.js";
import { createClient } from "../../runtime/client.js";
import { Code, RpcError } from "../../runtime/errors.js";
import { Registry } from "../../runtime/metrics.js";
import { ResourceCatalog } from "../../services/query/catalog.js";
import { HttpBackend } from "../../services/query/http-backend.js";
import { startQueryServer } from "../../services/query/index.js";
import { QueryMetrics } from "../../services/query/metrics.js";
import { EntityReader } from "../../services/query/reader.js";
import { RedisCache } from "../../runtime/cache/redis-cache.js";
import { closedPort, deleteKeys, log, REDIS_URL, testCertificates, unique, untilStale } from "./helpers.js";

const prefix = `${unique("umwtest")}:`;
let upstream: Server;
let base: string;
const requests: string[] = [];
/** Ids that currently hang (the upstream never answers them in time). */
const hanging = new Set<string>(["slow"]);
let redis: RedisCache;

before(async () => {
  upstream = createServer((req, res) => {
    requests.push(req.url ?? "");
    const [, , tenant, type, id] = decodeURI(req.url ?? "").split("/");
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(typeof body === "string" ? body : JSON.stringify(body));
    };
    if (id && hanging.has(id)) return void setTimeout(() => send(200, { version: 1, data: {} }), 3_000).unref();
    if (id === "missing") return send(404, { error: "not found" });
    if (id === "boom") return send(500, { error: "boom" });
    if (id === "badjson") return send(200, "{ not json");
    if (id === "badversion") return send(200, { version: -1, data: {} });
    send(200, { version: id === "big" ? "9007199254740993" : 5, data: { tenant, type, id }, updateTime: "2024-05-01T10:00:00Z" });
  });
  await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  redis = await RedisCache.connect({ url: REDIS_URL, log });
});

after(async () => {
  await redis?.close();
  upstream.closeAllConnections();
  await new Promise<void>((resolve) => upstream.close(() => resolve()));
  await deleteKeys(prefix);
});

function reader(urlTemplate: string, policy = {}) {
  const backend = new HttpBackend({ urlTemplate, timeoutMs: 200 });
  return new EntityReader({ cache: redis, catalog: ResourceCatalog.of({ remote: { backend, policy } }), metrics: new QueryMetrics(new Registry()), log, keyPrefix: prefix });
}

const reason = (expected: string, code = Code.UNAVAILABLE) => (e: unknown) => {
  assert.ok(e instanceof RpcError, String(e));
  assert.equal(Code[e.code], Code[code]);
  assert.equal(e.reason, expected);
  return true;
};

test("URL template: {tenant}, {type}, {id} are percent-encoded", () => {
  const backend = new HttpBackend({ urlTemplate: "http://h/v1/{tenant}/x/{type}/{id}?q={id}", timeoutMs: 1 });
  assert.equal(backend.url("a b", "t", "x/../y?z#"), "http://h/v1/a%20b/x/t/x%2F..%2Fy%3Fz%23?q=x%2F..%2Fy%3Fz%23");
});

test("found, cached, 404 as a cached NOT_FOUND, upstream failures as UNAVAILABLE", async () => {
  const r = reader(`${base}/things/{tenant}/{type}/{id}`, { negativeTtlMs: 60_000 });
  const first = await r.get({ tenant: "acme", type: "remote", id: "w.1~x" });
  assert.equal(first.entity?.version, 5n);
  assert.deepEqual(first.entity?.data, { tenant: "acme", type: "remote", id: "w.1~x" });
  assert.equal(first.entity?.updateTime?.seconds, BigInt(Date.parse("2024-05-01T10:00:00Z") / 1000));
  assert.equal(first.status.kind, "miss");
  assert.equal((await r.get({ tenant: "acme", type: "remote", id: "w.1~x" })).status.kind, "hit");
  assert.equal(requests.filter((url) => url === "/things/acme/remote/w.1~x").length, 1);
  assert.equal((await r.get({ tenant: "acme", type: "remote", id: "big" })).entity?.version, 9_007_199_254_740_993n);

  assert.equal((await r.get({ tenant: "acme", type: "remote", id: "missing" })).entity, undefined);
  assert.equal((await r.get({ tenant: "acme", type: "remote", id: "missing" })).status.kind, "negative-hit");
  assert.equal(requests.filter((url) => url.endsWith("/missing")).length, 1);

  await assert.rejects(r.get({ tenant: "acme", type: "remote", id: "boom" }), reason("UPSTREAM_ERROR"));
  await assert.rejects(r.get({ tenant: "acme", type: "remote", id: "badjson" }), reason("UPSTREAM_BAD_RESPONSE"));
  await assert.rejects(r.get({ tenant: "acme", type: "remote", id: "badversion" }), reason("UPSTREAM_BAD_RESPONSE"));
  const started = performance.now();
  await assert.rejects(r.get({ tenant: "acme", type: "remote", id: "slow" }), reason("BACKEND_TIMEOUT"));
  const waited = performance.now() - started;
  assert.ok(waited >= 190 && waited < 1_000, `timed out after ${waited.toFixed(0)} ms (timeoutMs 200)`);

  const batch = await r.getMany("acme", "remote", ["b1", "missing", "b2"]);
  assert.deepEqual(batch.map(({ result }) => result.entity?.id), ["b1", undefined, "b2"]);
  await assert.rejects(r.list("acme", "remote", undefined, 10), reason("LIST_NOT_SUPPORTED", Code.UNIMPLEMENTED));
  await r.close();
});

test("an unreachable upstream is UNAVAILABLE; a timing-out one serves stale within the grace", async () => {
  const dead = reader(`http://127.0.0.1:${await closedPort()}/things/{tenant}/{id}`);
  await assert.rejects(dead.get({ tenant: "acme", type: "remote", id: "x" }), reason("BACKEND_UNAVAILABLE"));
  await dead.close();

  const flaky = reader(`${base}/things/{tenant}/{type}/{id}`, { ttlMs: 100, staleGraceMs: 30_000, earlyRefreshBeta: 0 });
  assert.equal((await flaky.get({ tenant: "stale-co", type: "remote", id: "flaky" })).entity?.version, 5n);
  hanging.add("flaky");
  await untilStale(redis, flaky.keyOf("stale-co", "remote", "flaky"));
  const stale = await flaky.get({ tenant: "stale-co", type: "remote", id: "flaky" });
  assert.deepEqual(stale.status, { kind: "stale", detail: "backend-timeout" });
  assert.equal(stale.entity?.version, 5n);
  await flaky.close();
});

test("through QueryService over mTLS: found, upstream timeout -> UNAVAILABLE", async () => {
  const certs = testCertificates();
  const cache = await RedisCache.connect({ url: REDIS_URL, log });
  const server = await startQueryServer({
    catalog: ResourceCatalog.of({ remote: { backend: new HttpBackend({ urlTemplate: `${base}/things/{tenant}/{type}/{id}`, timeoutMs: 200 }) } }),
    cache,
    keyPrefix: prefix,
    credentials: certs.server,
    log,
    registry: new Registry(),
    owns: [cache],
  });
  const client = createClient(QueryService, server.address, certs.client());
  try {
    const { entity } = await client.getEntity({ tenant: "grpc-co", type: "remote", id: "g1" });
    assert.deepEqual(entity?.data, { tenant: "grpc-co", type: "remote", id: "g1" });
    await assert.rejects(client.getEntity({ tenant: "grpc-co", type: "remote", id: "slow" }), reason("BACKEND_TIMEOUT"));
    await assert.rejects(client.listEntities({ tenant: "grpc-co", type: "remote" }), reason("LIST_NOT_SUPPORTED", Code.UNIMPLEMENTED));
  } finally {
    client.close();
    await server.stop();
    certs.remove();
  }
});
