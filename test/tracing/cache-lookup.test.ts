// Cache lookups traced by what they found (runtime/cache/lookup-tracing.ts), against the real Redis
// with instrumentation-ioredis patched in as runtime/telemetry.ts does: a hit is an attribute on the
// active span and no Redis span, a miss or a failure is one Redis span (not two), other commands keep
// the instrumentation's spans, and an unsampled read records nothing.
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { create } from "@bufbuild/protobuf";
import { context, SpanKind, SpanStatusCode, trace, type Span } from "@opentelemetry/api";
import { registerInstrumentations } from "@opentelemetry/instrumentation";
import { IORedisInstrumentation } from "@opentelemetry/instrumentation-ioredis";
import { node } from "@opentelemetry/sdk-node";
import { EntitySchema } from "../../gen/umw/v1/entity_pb.js";
import { entityEntry } from "../../runtime/cache/entry.js";
import { cacheKey } from "../../runtime/cache/keys.js";
import { RedisCache } from "../../runtime/cache/redis-cache.js";
import { freePort } from "../support/ports.js";
import { dropRedisPrefix } from "../support/redis.js";
import { infra } from "../support/env.js";
import { log } from "../query/helpers.js";

const prefix = `umwtest-lookup-${process.pid}-${Date.now()}:`;
const key = (id: string) => cacheKey(prefix, "acme", "thing", id);
const entry = (id: string) =>
  entityEntry(create(EntitySchema, { tenant: "acme", type: "thing", id, version: 1n, data: { id } }), { now: Date.now(), ttlMs: 60_000, graceMs: 10_000, loadMs: 1 });

describe("cache lookup tracing", () => {
  const exporter = new node.InMemorySpanExporter();
  const provider = new node.NodeTracerProvider({ spanProcessors: [new node.SimpleSpanProcessor(exporter)] });
  let unregister: () => void = () => undefined;
  let cache: RedisCache;

  /** Runs `body` inside a recording span `read`; returns that span's finished form and every other span. */
  async function inSpan(body: () => Promise<unknown>) {
    const span: Span = trace.getTracer("test").startSpan("read", { kind: SpanKind.SERVER });
    await context.with(trace.setSpan(context.active(), span), body);
    span.end();
    const spans = exporter.getFinishedSpans();
    const read = spans.find((s) => s.name === "read")!;
    return { read, others: spans.filter((s) => s !== read) };
  }

  before(async () => {
    provider.register();
    unregister = registerInstrumentations({ instrumentations: [new IORedisInstrumentation({ requireParentSpan: true })], tracerProvider: provider });
    createRequire(import.meta.url)("ioredis");
    cache = await RedisCache.connect({ url: infra.redisUrl, log });
    await cache.set(key("present"), entry("present"), 60_000);
    await cache.set(key("also-present"), entry("also-present"), 60_000);
  });
  after(async () => {
    await cache.close();
    await dropRedisPrefix(prefix);
    unregister();
    await provider.shutdown();
  });
  beforeEach(() => exporter.reset());

  test("other Redis commands keep instrumentation-ioredis' spans (so the instrumentation is live here)", async () => {
    const { read, others } = await inSpan(() => cache.set(key("written"), entry("written"), 60_000));
    const redis = others.filter((s) => s.attributes["db.system.name"] === "redis");
    assert.ok(redis.length >= 1, `a span for the write, got ${others.map((s) => s.name).join(", ")}`);
    assert.ok(redis.every((s) => s.parentSpanContext?.spanId === read.spanContext().spanId));
  });

  test("a hit: no Redis span, umw.cache.hit on the active span", async () => {
    const { read, others } = await inSpan(async () => assert.equal((await cache.get(key("present")))?.entity?.id, "present"));
    assert.deepEqual(others.map((s) => s.name), []);
    assert.equal(read.attributes["umw.cache.hit"], true);
  });

  test("a miss: one Redis GET span, the child of the active span, started before it ended", async () => {
    const { read, others } = await inSpan(async () => assert.equal(await cache.get(key("absent")), undefined));
    assert.deepEqual(others.map((s) => s.name), ["get"]);
    const [get] = others;
    assert.equal(get!.kind, SpanKind.CLIENT);
    assert.equal(get!.parentSpanContext?.spanId, read.spanContext().spanId);
    assert.equal(get!.attributes["db.system.name"], "redis");
    assert.equal(get!.attributes["db.operation.name"], "get");
    assert.equal(get!.attributes["db.query.text"], `get ${key("absent").entry}`);
    assert.ok(get!.attributes["server.port"], "the server's port");
    assert.notEqual(get!.status.code, SpanStatusCode.ERROR);
    const ns = (t: readonly [number, number]) => BigInt(t[0]) * 1_000_000_000n + BigInt(t[1]);
    // The SDK anchors each span's clock on Date.now() (millisecond resolution) when it is made, so two
    // spans' times may disagree by up to a millisecond: the GET starts no earlier than that before the read.
    const CLOCK_RESOLUTION_NS = 1_000_000n;
    assert.ok(ns(get!.startTime) + CLOCK_RESOLUTION_NS >= ns(read.startTime) && ns(get!.endTime) >= ns(get!.startTime), "within the read");
    assert.equal(read.attributes["umw.cache.hit"], false);
  });

  test("MGET: all found is a hit without a span; one missing key makes the MGET span", async () => {
    const all = await inSpan(() => cache.getMany([key("present"), key("also-present")]));
    assert.deepEqual(all.others.map((s) => s.name), []);
    assert.equal(all.read.attributes["umw.cache.hit"], true);
    exporter.reset();
    const some = await inSpan(() => cache.getMany([key("present"), key("absent")]));
    assert.deepEqual(some.others.map((s) => s.name), ["mget"]);
    assert.equal(some.others[0]!.attributes["db.query.text"], `mget ${key("present").entry} ${key("absent").entry}`);
    assert.equal(some.read.attributes["umw.cache.hit"], false);
  });

  test("outside a recording span: nothing recorded", async () => {
    assert.equal((await cache.get(key("present")))?.entity?.id, "present");
    assert.equal(await cache.get(key("absent")), undefined);
    const unsampled = trace.wrapSpanContext({ traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7", traceFlags: 0 });
    await context.with(trace.setSpan(context.active(), unsampled), () => cache.get(key("absent")));
    assert.deepEqual(exporter.getFinishedSpans(), []);
  });

  test("Redis unreachable: the lookup fails as before, its span says ERROR with the exception", async () => {
    const dead = await RedisCache.connect({ url: `redis://127.0.0.1:${await freePort()}`, log, readyTimeoutMs: 200, connectTimeoutMs: 200 });
    try {
      exporter.reset();
      let failure: unknown;
      const { read, others } = await inSpan(() => dead.get(key("present")).catch((error: unknown) => (failure = error)));
      assert.ok(failure instanceof Error, "the lookup rejects");
      const [get] = others.filter((s) => s.name === "get");
      assert.ok(get, `a get span, got ${others.map((s) => s.name).join(", ")}`);
      assert.equal(get.status.code, SpanStatusCode.ERROR);
      assert.ok(get.events.some((event) => event.name === "exception"));
      assert.equal(read.attributes["umw.cache.hit"], false);
    } finally {
      await dead.close();
    }
  });
});
