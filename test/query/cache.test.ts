// The Cache port's contract, run against the Redis adapter (real Redis) and the in-memory
// adapter; plus the entry envelope, TTL jitter, page tokens and the metrics registry.
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { EntitySchema } from "../../gen/umw/v1/entity_pb.js";
import { Code, RpcError } from "../../runtime/errors.js";
import { counter, countOf, gauge, histogram, Registry, valueOf } from "../../runtime/metrics.js";
import { OTHER_TENANTS, tenantLabeler } from "../../runtime/metric-labels.js";
import type { Cache } from "../../runtime/cache/cache.js";
import { batchCacheStatus, formatCacheStatus } from "../../services/query/cache-status.js";
import { decodeEntry, encodeEntry, entityEntry, jitter, negativeEntry, tombstoneEntry } from "../../runtime/cache/entry.js";
import { cacheKey } from "../../runtime/cache/keys.js";
import { MemoryCache } from "../../runtime/cache/memory-cache.js";
import { decodePageToken, encodePageToken, pageSizeOf } from "../../services/query/page-token.js";
import { RedisCache } from "../../runtime/cache/redis-cache.js";
import { deleteKeys, log, REDIS_URL, unique } from "./helpers.js";
import { waitFor } from "../support/wait.js";

const entity = (id: string, version: number) => create(EntitySchema, { tenant: "acme", type: "thing", id, version: BigInt(version), data: { id, v: version } });
const entry = (id: string, version: number) => entityEntry(entity(id, version), { now: Date.now(), ttlMs: 60_000, graceMs: 10_000, loadMs: 2 });

const prefix = `${unique("umwtest")}:`;
after(() => deleteKeys(prefix));

const adapters: [string, () => Promise<Cache>][] = [
  ["redis", () => RedisCache.connect({ url: REDIS_URL, log })],
  ["memory", async () => new MemoryCache()],
];

for (const [name, make] of adapters) {
  describe(`Cache contract: ${name}`, () => {
    let n = 0;
    const key = () => cacheKey(`${prefix}${name}:`, "acme", "thing", `k${++n}`);

    test("get/getMany round-trip the entry (entity bytes, version, times)", async () => {
      const cache = await make();
      try {
        const [a, b, missing] = [key(), key(), key()];
        const stored = entry("a", 7);
        assert.deepEqual(await cache.set(a, stored, 60_000), { stored: true });
        await cache.set(b, negativeEntry({ now: Date.now(), ttlMs: 5_000, loadMs: 1 }), 5_000);
        const got = await cache.get(a);
        assert.equal(got?.kind, "entity");
        assert.equal(got?.version, 7n);
        assert.deepEqual(got?.entity?.data, { id: "a", v: 7 });
        assert.equal(got?.freshUntil, stored.freshUntil);
        const many = await cache.getMany([a, b, missing]);
        assert.deepEqual(many.map((e) => e?.kind), ["entity", "negative", undefined]);
      } finally {
        await cache.close();
      }
    });

    test("versioned set refuses a lower version, accepts equal and higher", async () => {
      const cache = await make();
      try {
        const k = key();
        assert.deepEqual(await cache.set(k, entry("x", 5), 60_000), { stored: true });
        assert.deepEqual(await cache.set(k, entry("x", 4), 60_000), { stored: false, current: 5n });
        assert.deepEqual(await cache.set(k, entry("x", 5), 60_000), { stored: true });
        assert.deepEqual(await cache.set(k, entry("x", 6), 60_000), { stored: true });
        assert.equal((await cache.get(k))?.version, 6n);
        // A NOT_FOUND (version 0) never replaces an entity.
        assert.equal((await cache.set(k, negativeEntry({ now: Date.now(), ttlMs: 1_000, loadMs: 0 }), 1_000)).stored, false);
        // Exact comparison beyond 2^53.
        const big = key();
        await cache.set(big, { ...entry("big", 1), version: 9_007_199_254_740_993n }, 60_000);
        assert.equal((await cache.set(big, { ...entry("big", 1), version: 9_007_199_254_740_992n }, 60_000)).stored, false);
        assert.equal((await cache.set(big, { ...entry("big", 1), version: 9_007_199_254_740_994n }, 60_000)).stored, true);
      } finally {
        await cache.close();
      }
    });

    test("invalidate writes a tombstone that refuses values below it, keeps newer entries", async () => {
      const cache = await make();
      try {
        const k = key();
        await cache.set(k, entry("t", 3), 60_000);
        assert.equal(await cache.invalidate(k, tombstoneEntry(5n, Date.now(), 60_000), 60_000), true);
        assert.equal((await cache.get(k))?.kind, "tombstone");
        assert.deepEqual(await cache.set(k, entry("t", 4), 60_000), { stored: false, current: 5n });
        assert.equal((await cache.set(k, negativeEntry({ now: Date.now(), ttlMs: 1_000, loadMs: 0 }), 1_000)).stored, false);
        // An older invalidation arriving late changes nothing.
        assert.equal(await cache.invalidate(k, tombstoneEntry(4n, Date.now(), 60_000), 60_000), false);
        assert.deepEqual(await cache.set(k, entry("t", 5), 60_000), { stored: true });
        // An invalidation at the cached version (or below) keeps the entry.
        assert.equal(await cache.invalidate(k, tombstoneEntry(5n, Date.now(), 60_000), 60_000), false);
        assert.equal((await cache.get(k))?.kind, "entity");
        // Invalidating a key nobody cached still fences it.
        const cold = key();
        assert.equal(await cache.invalidate(cold, tombstoneEntry(2n, Date.now(), 60_000), 60_000), true);
        assert.equal((await cache.set(cold, entry("c", 1), 60_000)).stored, false);
      } finally {
        await cache.close();
      }
    });

    test("lease: one holder at a time, expires, released only by its token", async () => {
      const cache = await make();
      try {
        const k = key();
        assert.equal(await cache.acquireLease(k, "a", 200), true);
        assert.equal(await cache.acquireLease(k, "b", 200), false);
        // Another token's completion does not release a's lease.
        await cache.complete(k, "b", { kind: "pass", entry: entry("l", 1) });
        assert.equal(await cache.acquireLease(k, "c", 200), false);
        await cache.complete(k, "a", { kind: "pass", entry: entry("l", 1) });
        assert.equal(await cache.acquireLease(k, "c", 100), true);
        const takenAt = Date.now();
        const taken = await waitFor(async () => await cache.acquireLease(k, "d", 100), { what: "c's 100 ms lease to expire", timeoutMs: 2_000 });
        assert.equal(taken, true, "an expired lease can be taken");
        assert.ok(Date.now() - takenAt >= 80, `taken ${Date.now() - takenAt} ms after c's 100 ms lease began: it had expired, not been ignored`);
      } finally {
        await cache.close();
      }
    });

    test("complete stores (versioned), releases and announces to watchers", async () => {
      const cache = await make();
      const other = await make();
      try {
        const k = key();
        const watch = (name === "memory" ? cache : other).watch(k);
        await watch.ready;
        assert.equal(await cache.acquireLease(k, "tok", 5_000), true);
        const result = await cache.complete(k, "tok", { kind: "store", entry: entry("w", 2), ttlMs: 60_000 });
        assert.deepEqual(result, { stored: true });
        const message = await watch.next(2_000);
        assert.equal(message?.kind, "entry");
        assert.equal(message?.kind === "entry" && message.stored, true);
        assert.equal(message?.kind === "entry" && message.entry.version, 2n);
        assert.equal(await cache.acquireLease(k, "next", 100), true, "lease released");
        // A refused store is announced as unstored; failures are announced too.
        const refused = await cache.complete(k, "next", { kind: "store", entry: entry("w", 1), ttlMs: 60_000 });
        assert.deepEqual(refused, { stored: false, current: 2n });
        const unstored = await watch.next(2_000);
        assert.equal(unstored?.kind === "entry" && unstored.stored, false);
        await cache.complete(k, "none", { kind: "error", error: new RpcError(Code.UNAVAILABLE, "BACKEND_UNAVAILABLE", "down") });
        const failed = await watch.next(2_000);
        assert.equal(failed?.kind, "error");
        const announced = failed?.kind === "error" ? failed.error : undefined;
        assert.deepEqual({ code: announced?.code, reason: announced?.reason, message: announced?.message }, { code: 14, reason: "BACKEND_UNAVAILABLE", message: "down" });
        assert.equal(await watch.next(50), undefined, "times out when nothing comes");
        watch.close();
      } finally {
        await cache.close();
        await other.close();
      }
    });
  });
}

test("a Redis adapter pointed at a closed port fails fast instead of hanging", async () => {
  const started = Date.now();
  const cache = await RedisCache.connect({ url: "redis://127.0.0.1:1", log, readyTimeoutMs: 300 });
  try {
    await assert.rejects(cache.get(cacheKey(prefix, "acme", "thing", "x")));
    const watch = cache.watch(cacheKey(prefix, "acme", "thing", "x"));
    await assert.rejects(watch.ready);
    watch.close();
    assert.ok(Date.now() - started < 3_000);
  } finally {
    await cache.close();
  }
});

test("entry envelope: header fields and entity survive encode/decode", () => {
  const e = entityEntry(entity("e", 42), { now: 1_000, ttlMs: 500, graceMs: 200, loadMs: 3.5 });
  const bytes = encodeEntry(e);
  assert.equal(bytes.toString("latin1", 0, 23), "U1E00000000000000000042");
  const back = decodeEntry(bytes);
  assert.deepEqual({ ...back, entity: undefined }, { ...e, entity: undefined });
  assert.equal(back.entity?.id, "e");
  assert.equal(decodeEntry(encodeEntry(tombstoneEntry(9n, 5, 10))).kind, "tombstone");
  assert.throws(() => decodeEntry(Buffer.from("garbage-garbage-garbage-garbage-garbage-garbage-garbage-garbage")));
});

test("TTL jitter stays within ±10% and spreads", () => {
  const values = Array.from({ length: 2_000 }, () => jitter(10_000));
  assert.ok(values.every((v) => v >= 9_000 && v <= 11_000));
  assert.ok(Math.min(...values) < 9_200 && Math.max(...values) > 10_800, "uses the whole band");
  assert.equal(jitter(10_000, () => 0), 9_000);
  assert.equal(jitter(10_000, () => 1), 11_000);
});

test("page tokens: round trip, bound to tenant and type, tampering refused", () => {
  const token = encodePageToken("acme", "thing", "id-0042");
  assert.match(token, /^[A-Za-z0-9_-]+$/);
  assert.equal(decodePageToken("acme", "thing", token), "id-0042");
  const invalid = (t: string, tenant = "acme", type = "thing") =>
    assert.throws(() => decodePageToken(tenant, type, t), (e: unknown) => e instanceof RpcError && e.code === Code.INVALID_ARGUMENT && e.reason === "INVALID_PAGE_TOKEN");
  invalid(token, "other");
  invalid(token, "acme", "widget");
  invalid(token.slice(0, -2));
  invalid(`${token.slice(0, 4)}${token[4] === "A" ? "B" : "A"}${token.slice(5)}`);
  invalid("not a token!");
  invalid("AA");
  assert.equal(pageSizeOf(0), 50);
  assert.equal(pageSizeOf(10_000), 500);
  assert.throws(() => pageSizeOf(-1), (e: unknown) => e instanceof RpcError && e.reason === "INVALID_PAGE_SIZE");
});

test("cache status: RFC 9211 forms", () => {
  assert.equal(formatCacheStatus({ kind: "hit", ttlMs: 376_400, layer: "redis" }), "umw; hit; ttl=376");
  assert.equal(formatCacheStatus({ kind: "miss", fwd: "miss", stored: true }), "umw; fwd=miss; stored");
  assert.equal(formatCacheStatus({ kind: "miss", fwd: "request", stored: false, detail: "fenced" }), "umw; fwd=request; detail=fenced");
  assert.equal(formatCacheStatus({ kind: "collapsed" }), "umw; fwd=uri-miss; collapsed");
  assert.equal(formatCacheStatus({ kind: "stale", detail: "backend-timeout" }), "umw; fwd=stale; detail=backend-timeout");
  assert.equal(formatCacheStatus({ kind: "negative-hit", ttlMs: 1_000 }), "umw; hit; detail=negative");
  assert.equal(
    formatCacheStatus(batchCacheStatus([{ kind: "hit", ttlMs: 5_000, layer: "redis" }, { kind: "miss", fwd: "miss", stored: true }, { kind: "hit", ttlMs: 9_000, layer: "redis" }])),
    'umw; fwd=partial; detail="hit=2 miss=1"',
  );
  assert.equal(formatCacheStatus(batchCacheStatus([{ kind: "hit", ttlMs: 5_000, layer: "redis" }, { kind: "hit", ttlMs: 3_000, layer: "redis" }])), "umw; hit; ttl=3");
});

test("metrics: one metric per name in a registry, bounded tenant labels", async () => {
  const registry = new Registry();
  const hits = counter(registry, { name: "t_hits_total", help: "Hits.", labelNames: ["tenant", "type"] });
  assert.equal(counter(registry, { name: "t_hits_total", help: "again", labelNames: ["tenant", "type"] }), hits);
  assert.throws(() => gauge(registry, { name: "t_hits_total", help: "", labelNames: ["tenant", "type"] }), /already registered/);
  assert.throws(() => counter(registry, { name: "t_hits_total", help: "", labelNames: ["tenant"] }), /already registered/);
  const label = tenantLabeler(["acme"]);
  hits.inc({ tenant: label("acme"), type: "thing" });
  for (let i = 0; i < 50; i++) hits.inc({ tenant: label(`random-${i}`), type: "thing" });
  assert.equal(await valueOf(hits, { tenant: "acme" }), 1);
  assert.equal(await valueOf(hits, { tenant: OTHER_TENANTS }), 50);
  assert.equal((await hits.get()).values.length, 2, "50 tenants off the allow-list are one series");
  assert.equal(tenantLabeler([])("acme"), OTHER_TENANTS);
  const latency = histogram(registry, { name: "t_seconds", help: "Latency.", labelNames: ["op"], buckets: [0.1, 1] });
  latency.observe({ op: "get" }, 0.05);
  latency.observe({ op: "get" }, 5);
  assert.equal(await countOf(latency, { op: "get" }), 2);
  assert.match(await registry.metrics(), /^t_seconds_bucket\{le="0.1",op="get"\} 1$/m);
});
