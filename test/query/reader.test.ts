// EntityReader against real Redis and the real Postgres replica: fills, TTL jitter, negative
// caching, XFetch, serve-stale, Redis down, stale-set fencing, read-your-writes, batches,
// lease expiry. Each test uses its own resource type so policies and keys do not mix.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import pg from "pg";
import { databaseOnPool } from "../../runtime/sql.js";
import { EntitySchema } from "../../gen/umw/v1/entity_pb.js";
import { Code, RpcError } from "../../runtime/errors.js";
import { Registry, valueOf } from "../../runtime/metrics.js";
import { OTHER_TENANTS } from "../../runtime/metric-labels.js";
import type { CachePolicy } from "../../runtime/resources.js";
import type { Cache } from "../../runtime/cache/cache.js";
import { ResourceCatalog } from "../../services/query/catalog.js";
import { MemoryCache } from "../../runtime/cache/memory-cache.js";
import { QueryMetrics } from "../../services/query/metrics.js";
import { PostgresBackend } from "../../services/query/postgres-backend.js";
import { EntityReader } from "../../services/query/reader.js";
import { RedisCache } from "../../runtime/cache/redis-cache.js";
import { closedPort, CountingBackend, createTestDatabase, deleteKeys, log, REDIS_URL, unique, untilGone, untilStale, type TestDatabase } from "./helpers.js";
import { waitFor } from "../support/wait.js";

const TABLE = { table: "umw_entities", keyColumn: "id", tenantColumn: "tenant", versionColumn: "version", dataColumn: "data", typeColumn: "type" };
const TENANT = "acme";
/** The tenant label of TENANT's reads: tenants are folded into `_other` unless allow-listed. */
const TENANT_LABEL = OTHER_TENANTS;
const prefix = `${unique("umwtest")}:`;

let db: TestDatabase;
let pool: pg.Pool;
let deadPool: pg.Pool;
let redis: RedisCache;
const owned: { close(): Promise<void> }[] = [];
let typeCounter = 0;

before(async () => {
  db = await createTestDatabase();
  pool = new pg.Pool({ connectionString: db.replicaUrl, max: 8 });
  deadPool = new pg.Pool({ connectionString: `postgres://umw:umw@127.0.0.1:${await closedPort()}/umw`, max: 2, connectionTimeoutMillis: 500 });
  deadPool.on("error", () => undefined);
  redis = await RedisCache.connect({ url: REDIS_URL, log });
});

after(async () => {
  for (const part of owned) await part.close().catch(() => undefined);
  await redis?.close();
  await pool?.end();
  await deadPool?.end();
  await db?.drop();
  await deleteKeys(prefix);
});

interface Setup {
  readonly type: string;
  readonly backend: CountingBackend;
  readonly reader: EntityReader;
  readonly metrics: QueryMetrics;
}

/** A reader over a fresh resource type. */
function setup(policy: Partial<CachePolicy> = {}, options: { cache?: Cache; backend?: CountingBackend; type?: string; pool?: pg.Pool } = {}): Setup {
  const type = options.type ?? `t${++typeCounter}-${Math.random().toString(36).slice(2, 8)}`;
  const backend = options.backend ?? new CountingBackend(new PostgresBackend(databaseOnPool(options.pool ?? pool), TABLE));
  const metrics = new QueryMetrics(new Registry());
  const reader = new EntityReader({ cache: options.cache ?? redis, catalog: ResourceCatalog.of({ [type]: { backend, policy } }), metrics, log, keyPrefix: prefix });
  owned.push(reader);
  return { type, backend, reader, metrics };
}

test("miss loads once and stores; the stored TTLs carry ±10% jitter; then hits", async () => {
  const { type, backend, reader, metrics } = setup({ ttlMs: 10_000, staleGraceMs: 5_000 });
  const ids = Array.from({ length: 40 }, (_, i) => `j${i}`);
  for (const id of ids) await db.insert(TENANT, type, id, 1);
  await db.syncReplica();
  for (const id of ids) {
    const result = await reader.get({ tenant: TENANT, type, id });
    assert.deepEqual(result.status, { kind: "miss", fwd: "miss", stored: true, detail: undefined });
    assert.equal(result.entity?.id, id);
    assert.deepEqual(result.entity?.data, { id });
  }
  assert.equal(backend.gets, 40);
  const lifetimes: number[] = [];
  for (const id of ids) {
    const key = reader.keyOf(TENANT, type, id);
    const entry = await redis.get(key);
    const fresh = entry!.freshUntil - entry!.loadedAt;
    assert.ok(fresh >= 9_000 && fresh <= 11_000, `fresh lifetime ${fresh} within ±10% of 10 s`);
    assert.equal(entry!.staleUntil - entry!.freshUntil, 5_000);
    const pttl = await redis.redis.pttl(key.entry);
    assert.ok(pttl > fresh && pttl <= fresh + 5_000, `redis PX ${pttl} = fresh ${fresh} + grace, less the time since`);
    lifetimes.push(fresh);
  }
  assert.ok(new Set(lifetimes).size > 30, "keys filled together expire apart");
  const hit = await reader.get({ tenant: TENANT, type, id: "j0" });
  assert.equal(hit.status.kind, "hit");
  assert.ok(hit.status.kind === "hit" && hit.status.ttlMs > 8_000);
  assert.equal(backend.gets, 40);
  assert.equal(await valueOf(metrics.misses, { tenant: TENANT_LABEL, type }), 40);
  assert.equal(await valueOf(metrics.hits, { tenant: TENANT_LABEL, type, layer: "redis" }), 1);
});

test("NOT_FOUND is cached for negativeTtlMs, then loaded again", async () => {
  const { type, backend, reader, metrics } = setup({ negativeTtlMs: 300 });
  const first = await reader.get({ tenant: TENANT, type, id: "ghost" });
  assert.equal(first.entity, undefined);
  assert.deepEqual(first.status, { kind: "miss", fwd: "miss", stored: true, detail: undefined });
  const second = await reader.get({ tenant: TENANT, type, id: "ghost" });
  assert.equal(second.entity, undefined);
  assert.equal(second.status.kind, "negative-hit");
  assert.equal(backend.gets, 1);
  assert.equal(await valueOf(metrics.negativeHits, { tenant: TENANT_LABEL, type }), 1);
  const pttl = await redis.redis.pttl(reader.keyOf(TENANT, type, "ghost").entry);
  assert.ok(pttl > 0 && pttl <= 330, `negative entry lives ~300 ms (±10%), PX ${pttl}`);
  await db.insert(TENANT, type, "ghost", 1);
  await db.syncReplica();
  await untilGone(redis, reader.keyOf(TENANT, type, "ghost"));
  const third = await reader.get({ tenant: TENANT, type, id: "ghost" });
  assert.equal(third.entity?.version, 1n);
  assert.equal(backend.gets, 2);
});

test("XFetch refreshes early in the background without blocking the caller", async () => {
  const { type, backend, reader, metrics } = setup({ ttlMs: 5_000, earlyRefreshBeta: 1e6 });
  await db.insert(TENANT, type, "hot", 1);
  await db.syncReplica();
  backend.delayMs = 500;
  await reader.get({ tenant: TENANT, type, id: "hot" });
  const firstLoad = (await redis.get(reader.keyOf(TENANT, type, "hot")))!.loadedAt;
  await db.insert(TENANT, type, "hot", 2);
  await db.syncReplica();
  const started = performance.now();
  const hit = await reader.get({ tenant: TENANT, type, id: "hot" });
  const elapsed = performance.now() - started;
  assert.equal(hit.status.kind, "hit");
  assert.equal(hit.entity?.version, 1n, "the caller gets the cached copy at once");
  // The refresh has started (a second backend call) but not finished when the caller has its answer.
  await waitFor(() => backend.gets === 2, { what: "the background refresh to reach the backend", timeoutMs: 300 });
  assert.equal((await redis.get(reader.keyOf(TENANT, type, "hot")))?.version, 1n);
  assert.ok(elapsed < 400, `caller waited ${elapsed.toFixed(1)} ms (the refresh takes 500)`);
  // Hits during the refresh do not start another one.
  await reader.get({ tenant: TENANT, type, id: "hot" });
  assert.equal(await valueOf(metrics.earlyRefreshes, { tenant: TENANT_LABEL, type }), 1);
  await waitFor(async () => ((await redis.get(reader.keyOf(TENANT, type, "hot")))?.version ?? 0n) === 2n, { what: "the background refresh", timeoutMs: 3_000 });
  assert.equal(backend.gets, 2);
  assert.ok((await redis.get(reader.keyOf(TENANT, type, "hot")))!.loadedAt > firstLoad);

  const off = setup({ ttlMs: 5_000, earlyRefreshBeta: 0 }, { type: `${type}-off` });
  await db.insert(TENANT, off.type, "cold", 1);
  await db.syncReplica();
  await off.reader.get({ tenant: TENANT, type: off.type, id: "cold" });
  for (let i = 0; i < 20; i++) await off.reader.get({ tenant: TENANT, type: off.type, id: "cold" });
  await off.reader.close(); // waits for any background refresh the hits started
  assert.equal(off.backend.gets, 1, "beta 0 never refreshes early");
});

test("serve-stale: an expired entry answers within the grace when the backend is down", async () => {
  const policy = { ttlMs: 200, staleGraceMs: 30_000, earlyRefreshBeta: 0 };
  const up = setup(policy);
  await db.insert(TENANT, up.type, "s1", 4);
  await db.syncReplica();
  assert.equal((await up.reader.get({ tenant: TENANT, type: up.type, id: "s1" })).entity?.version, 4n);
  // A second instance whose replica connection is refused (closed port), same cache.
  const down = setup(policy, { type: up.type, pool: deadPool });
  await untilStale(redis, up.reader.keyOf(TENANT, up.type, "s1"));
  const stale = await down.reader.get({ tenant: TENANT, type: up.type, id: "s1" });
  assert.deepEqual(stale.status, { kind: "stale", detail: "backend-unavailable" });
  assert.equal(stale.entity?.version, 4n);
  assert.equal(down.backend.gets, 1);
  assert.equal(await valueOf(down.metrics.staleServed, { tenant: TENANT_LABEL, type: up.type, reason: "backend-unavailable" }), 1);
  // Never-cached keys have nothing stale to offer: the failure is the answer.
  await assert.rejects(down.reader.get({ tenant: TENANT, type: up.type, id: "never" }), (e: unknown) => e instanceof RpcError && e.code === Code.UNAVAILABLE && e.reason === "BACKEND_UNAVAILABLE");

  // Past the grace window the stale copy is gone.
  const short = setup({ ttlMs: 100, staleGraceMs: 100, earlyRefreshBeta: 0 });
  await db.insert(TENANT, short.type, "s2", 1);
  await db.syncReplica();
  await short.reader.get({ tenant: TENANT, type: short.type, id: "s2" });
  const shortDown = setup({ ttlMs: 100, staleGraceMs: 100 }, { type: short.type, pool: deadPool });
  await untilGone(redis, short.reader.keyOf(TENANT, short.type, "s2"));
  await assert.rejects(shortDown.reader.get({ tenant: TENANT, type: short.type, id: "s2" }), (e: unknown) => e instanceof RpcError && e.code === Code.UNAVAILABLE);

  // A backend slower than the load bound (the lease) counts as down too.
  const slow = setup({ ttlMs: 100, staleGraceMs: 30_000, leaseMs: 200, earlyRefreshBeta: 0 });
  await db.insert(TENANT, slow.type, "s3", 2);
  await db.syncReplica();
  await slow.reader.get({ tenant: TENANT, type: slow.type, id: "s3" });
  await untilStale(redis, slow.reader.keyOf(TENANT, slow.type, "s3"));
  slow.backend.delayMs = 1_000;
  const timedOut = await slow.reader.get({ tenant: TENANT, type: slow.type, id: "s3" });
  assert.deepEqual(timedOut.status, { kind: "stale", detail: "backend-timeout" });
  assert.equal(timedOut.entity?.version, 2n);
});

test("Redis down: reads are answered from the backend (degraded, single-flight kept), never a crash", async () => {
  const downCache = await RedisCache.connect({ url: `redis://127.0.0.1:${await closedPort()}`, log, readyTimeoutMs: 200 });
  owned.push(downCache);
  const { type, backend, reader, metrics } = setup({}, { cache: downCache });
  await db.insert(TENANT, type, "d1", 3);
  await db.insert(TENANT, type, "d2", 1);
  await db.syncReplica();
  backend.delayMs = 50;
  const results = await Promise.all(Array.from({ length: 20 }, () => reader.get({ tenant: TENANT, type, id: "d1" })));
  for (const result of results) assert.equal(result.entity?.version, 3n);
  assert.equal(backend.gets, 1, "in-process single-flight still holds");
  assert.deepEqual(results.filter((r) => r.status.kind === "miss").map((r) => r.status), [{ kind: "miss", fwd: "miss", stored: false, detail: "cache-unavailable" }]);
  const batch = await reader.getMany(TENANT, type, ["d1", "d2", "nope"]);
  assert.deepEqual(batch.map(({ result }) => result.entity?.version), [3n, 1n, undefined]);
  assert.ok(await valueOf(metrics.cacheErrors) >= 2);
  // The cache updater must learn that its write failed (and retry the event).
  await assert.rejects(reader.writer.writeThrough(create(EntitySchema, { tenant: TENANT, type, id: "d1", version: 4n })), (e: unknown) => e instanceof RpcError && e.code === Code.UNAVAILABLE && e.reason === "CACHE_UNAVAILABLE");
  await assert.rejects(reader.writer.invalidate(TENANT, type, "d1", 4n), (e: unknown) => e instanceof RpcError && e.code === Code.UNAVAILABLE && e.reason === "CACHE_UNAVAILABLE");
});

test("stale-set fencing: a slow load started before an invalidation cannot overwrite it", async () => {
  const { type, backend, reader, metrics } = setup();
  await db.insert(TENANT, type, "f1", 1);
  await db.syncReplica();
  backend.delayAfterMs = 300;
  const slow = reader.get({ tenant: TENANT, type, id: "f1" });
  await waitFor(() => backend.reads === 1, { what: "the slow load to read version 1", timeoutMs: 5_000 });
  // The write of version 2 commits and its event invalidates while the load is in flight.
  await db.insert(TENANT, type, "f1", 2);
  assert.equal(await reader.writer.invalidate(TENANT, type, "f1", 2n), true);
  const result = await slow;
  assert.equal(result.entity?.version, 1n, "the concurrent caller still gets what was read");
  assert.deepEqual(result.status, { kind: "miss", fwd: "miss", stored: false, detail: "fenced" });
  assert.equal(await valueOf(metrics.fenced, { tenant: TENANT_LABEL, type }), 1);
  const held = await redis.get(reader.keyOf(TENANT, type, "f1"));
  assert.equal(held?.kind, "tombstone");
  assert.equal(held?.version, 2n);
  backend.delayAfterMs = 0;
  await db.syncReplica();
  const next = await reader.get({ tenant: TENANT, type, id: "f1" });
  assert.equal(next.entity?.version, 2n);
  assert.equal(next.status.kind === "miss" && next.status.stored, true);
});

test("writeThrough and invalidate are safe against reordered events", async () => {
  const { type, backend, reader } = setup();
  const v = (version: number) => create(EntitySchema, { tenant: TENANT, type, id: "r1", version: BigInt(version), data: { v: version } });
  assert.deepEqual(await reader.writer.writeThrough(v(3)), { stored: true });
  assert.deepEqual(await reader.writer.writeThrough(v(2)), { stored: false, current: 3n });
  assert.equal(await reader.writer.invalidate(TENANT, type, "r1", 2n), false, "an older invalidation does not evict a newer entry");
  let got = await reader.get({ tenant: TENANT, type, id: "r1" });
  assert.equal(got.status.kind, "hit");
  assert.equal(got.entity?.version, 3n);
  assert.equal(backend.gets, 0);
  assert.equal(await reader.writer.invalidate(TENANT, type, "r1", 5n), true);
  assert.deepEqual(await reader.writer.writeThrough(v(4)), { stored: false, current: 5n }, "version 4 arriving after the invalidation of 5 is refused");
  await db.insert(TENANT, type, "r1", 5);
  await db.syncReplica();
  got = await reader.get({ tenant: TENANT, type, id: "r1" });
  assert.equal(got.entity?.version, 5n);
  assert.deepEqual(await reader.writer.writeThrough(v(5)), { stored: true });
  assert.deepEqual(await reader.writer.writeThrough(v(6)), { stored: true });
  await reader.writer.apply(v(7));
  assert.equal((await reader.get({ tenant: TENANT, type, id: "r1" })).entity?.version, 7n);
});

test("read-your-writes: min_version above the cached copy forces a load; a lagging replica is neither cached nor returned", async () => {
  const { type, backend, reader } = setup();
  await db.insert(TENANT, type, "w1", 1);
  await db.syncReplica();
  assert.equal((await reader.get({ tenant: TENANT, type, id: "w1" })).entity?.version, 1n);
  await db.insert(TENANT, type, "w1", 2);
  await db.syncReplica();
  const fresh = await reader.get({ tenant: TENANT, type, id: "w1", minVersion: 2n });
  assert.equal(fresh.entity?.version, 2n);
  assert.deepEqual(fresh.status, { kind: "miss", fwd: "request", stored: true, detail: undefined });
  assert.equal((await reader.get({ tenant: TENANT, type, id: "w1", minVersion: 2n })).status.kind, "hit");

  // The client wrote version 3; the replica still answers 2.
  const loadsBefore = backend.gets;
  await assert.rejects(reader.get({ tenant: TENANT, type, id: "w1", minVersion: 3n }), (e: unknown) => {
    assert.ok(e instanceof RpcError);
    assert.equal(e.code, Code.UNAVAILABLE);
    assert.equal(e.reason, "REPLICA_LAGGING");
    assert.deepEqual(e.metadata, { minVersion: "3", replicaVersion: "2" });
    return true;
  });
  assert.equal(backend.gets - loadsBefore, 3, "three attempts with backoff");
  assert.equal((await redis.get(reader.keyOf(TENANT, type, "w1")))?.version, 2n, "cache untouched");
  // A replica that has not seen the entity at all: NOT_FOUND is not an answer to min_version either.
  await assert.rejects(reader.get({ tenant: TENANT, type, id: "brand-new", minVersion: 1n }), (e: unknown) => e instanceof RpcError && e.reason === "REPLICA_LAGGING");
  assert.equal(await redis.get(reader.keyOf(TENANT, type, "brand-new")), undefined, "no negative entry cached");
  await db.insert(TENANT, type, "w1", 3);
  await db.syncReplica();
  assert.equal((await reader.get({ tenant: TENANT, type, id: "w1", minVersion: 3n })).entity?.version, 3n);
});

test("batch: one MGET, one backend batchGet for the keys it leads, negatives cached", async () => {
  const { type, backend, reader } = setup();
  const ids = Array.from({ length: 10 }, (_, i) => `b${i}`);
  for (const id of ids.slice(0, 8)) await db.insert(TENANT, type, id, 1);
  await db.syncReplica();
  for (const id of ids.slice(0, 3)) await reader.get({ tenant: TENANT, type, id });
  assert.equal(backend.gets, 3);
  const first = await reader.getMany(TENANT, type, [...ids, "b1"]);
  assert.deepEqual(first.map(({ id }) => id), ids, "distinct ids in request order");
  assert.deepEqual(first.map(({ result }) => result.status.kind), ["hit", "hit", "hit", "miss", "miss", "miss", "miss", "miss", "miss", "miss"]);
  assert.deepEqual(first.map(({ result }) => result.entity?.id), [...ids.slice(0, 8), undefined, undefined]);
  assert.equal(backend.batchGets, 1);
  assert.equal(backend.batchIds, 7);
  const second = await reader.getMany(TENANT, type, ids);
  assert.deepEqual(second.map(({ result }) => result.status.kind), [...Array(8).fill("hit"), "negative-hit", "negative-hit"]);
  assert.equal(backend.batchGets, 1);
  await assert.rejects(reader.getMany(TENANT, type, Array.from({ length: 501 }, (_, i) => `x${i}`)), (e: unknown) => e instanceof RpcError && e.reason === "BATCH_TOO_LARGE");
});

test("a loader that dies holding the lease: waiters compete again after the lease time", async () => {
  const { type, backend, reader } = setup({ leaseMs: 300 });
  await db.insert(TENANT, type, "dead", 1);
  await db.syncReplica();
  // Another instance took the lease and vanished without announcing anything.
  assert.equal(await redis.acquireLease(reader.keyOf(TENANT, type, "dead"), "ghost-instance", 300), true);
  const started = performance.now();
  const result = await reader.get({ tenant: TENANT, type, id: "dead" });
  const waited = performance.now() - started;
  assert.equal(result.entity?.version, 1n);
  assert.equal(backend.gets, 1);
  assert.ok(waited >= 200 && waited < 2_000, `waited ${waited.toFixed(0)} ms for the lease to expire`);
});

test("a peer's failed load is every waiter's answer (no second load)", async () => {
  const failing = setup({ leaseMs: 2_000 });
  await db.insert(TENANT, failing.type, "p1", 1);
  await db.syncReplica();
  failing.backend.delayMs = 200;
  failing.backend.failWith = new RpcError(Code.UNAVAILABLE, "BACKEND_UNAVAILABLE", "replica restarting");
  const healthy = setup({ leaseMs: 2_000 }, { type: failing.type });
  const loser = failing.reader.get({ tenant: TENANT, type: failing.type, id: "p1" }).then(
    () => assert.fail("the failing loader cannot succeed"),
    (error: unknown) => error,
  );
  await waitFor(() => failing.backend.gets === 1, { what: "the failing instance to hold the lease and load", timeoutMs: 5_000 });
  const started = performance.now();
  await assert.rejects(healthy.reader.get({ tenant: TENANT, type: failing.type, id: "p1" }), (e: unknown) => e instanceof RpcError && e.reason === "BACKEND_UNAVAILABLE");
  assert.ok(performance.now() - started < 1_000, "the waiter learned of the failure from the announcement");
  assert.equal(((await loser) as RpcError).reason, "BACKEND_UNAVAILABLE");
  assert.equal(healthy.backend.gets, 0);
});

test("embedded mode: two readers sharing one MemoryCache load a key once", async () => {
  const memory = new MemoryCache();
  owned.push(memory);
  const backend = new CountingBackend(new PostgresBackend(databaseOnPool(pool), TABLE));
  const a = setup({}, { cache: memory, backend });
  const b = setup({}, { cache: memory, backend, type: a.type });
  await db.insert(TENANT, a.type, "m1", 9);
  await db.syncReplica();
  backend.delayMs = 100;
  const results = await Promise.all(Array.from({ length: 100 }, (_, i) => (i % 2 ? a : b).reader.get({ tenant: TENANT, type: a.type, id: "m1" })));
  assert.ok(results.every((r) => r.entity?.version === 9n));
  assert.equal(backend.gets, 1);
  assert.equal(results.filter((r) => r.status.kind === "collapsed").length, 99);
});

test("L1 in front of Redis answers without a round trip and follows local writes", async () => {
  const { type, reader, metrics } = setup({ l1Ms: 5_000 });
  await db.insert(TENANT, type, "l1", 1);
  await db.syncReplica();
  await reader.get({ tenant: TENANT, type, id: "l1" });
  const hit = await reader.get({ tenant: TENANT, type, id: "l1" });
  assert.equal(hit.status.kind === "hit" && hit.status.layer, "l1");
  assert.equal(await valueOf(metrics.hits, { tenant: TENANT_LABEL, type, layer: "l1" }), 1);
  await reader.writer.writeThrough(create(EntitySchema, { tenant: TENANT, type, id: "l1", version: 2n }));
  assert.equal((await reader.get({ tenant: TENANT, type, id: "l1" })).entity?.version, 2n);
  await reader.writer.invalidate(TENANT, type, "l1", 3n);
  await db.insert(TENANT, type, "l1", 3);
  await db.syncReplica();
  const after = await reader.get({ tenant: TENANT, type, id: "l1" });
  assert.equal(after.entity?.version, 3n);
  assert.equal(after.status.kind, "miss");
});
