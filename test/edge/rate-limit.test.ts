// Rate limits and quotas at the Node edge against the real Redis (scripts/infra.sh): bursts get 429
// RATE_LIMITED with Retry-After, RateLimit headers and RetryInfo; min_version reads have their own
// stricter bucket; two edges share one budget; Redis down follows the failure mode.
//
//   node --import tsx --test test/edge/rate-limit.test.ts
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { RateLimiter, type FailureMode } from "../../services/ratelimit/limiter.js";
import { DEFAULT_RULES, type RateLimitRules } from "../../services/ratelimit/rules.js";
import { TestIssuer } from "../support/dev-tokens.js";
import { infra, runId } from "../support/env.js";
import { freePort } from "../support/ports.js";
import { waitFor } from "../support/wait.js";
import { log, startFixture, type Fixture } from "./fixtures.js";

const prefix = `test:${runId()}:ratelimit:`;
const limiters: RateLimiter[] = [];
let fx: Fixture;
let redis: Redis;
let issuer: TestIssuer;

before(async () => {
  fx = await startFixture();
  redis = new Redis(infra.redisUrl);
  issuer = await TestIssuer.create();
});
after(async () => {
  await fx?.close();
  issuer?.close();
  await Promise.all(limiters.map((limiter) => limiter.close()));
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
});

let scope = 0;
/** A limiter on its own key space (so tests do not share buckets), with the rules given. */
function limiter(rules: Partial<RateLimitRules>, options: { failureMode?: FailureMode; redisUrl?: string; keyPrefix?: string } = {}): RateLimiter {
  const created = new RateLimiter({
    redisUrl: options.redisUrl ?? infra.redisUrl,
    keyPrefix: options.keyPrefix ?? `${prefix}${++scope}:`,
    rules: { ...DEFAULT_RULES, ...rules },
    failureMode: options.failureMode ?? "open",
    log,
  });
  limiters.push(created);
  return created;
}

/** The Authorization header of a verified user of a tenant: the edge keys the buckets by its tenant and subject. */
async function as(tenant: string, subject: string): Promise<Record<string, string>> {
  return { authorization: `Bearer ${await issuer.token(tenant, { subject })}` };
}

const entity = (id: string, tenant = "t1") => `/v1/tenants/${tenant}/types/book/entities/${id}`;

interface StatusBody {
  code: number;
  details: { "@type": string; reason?: string; metadata?: Record<string, string>; retryDelay?: string }[];
}

async function get(base: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; body: StatusBody }> {
  const response = await fetch(base + path, { headers });
  return { status: response.status, headers: response.headers, body: (await response.json()) as StatusBody };
}

describe("rate limits at the Node edge (real Redis)", () => {
  test("a burst beyond the principal's bucket gets 429 RATE_LIMITED with Retry-After, RateLimit headers and RetryInfo; it passes again once the bucket refills", async () => {
    const edge = await fx.startEdge({ rateLimit: { limiter: limiter({ principal: { rps: 0.5, burst: 3 } }) } });
    const statuses: number[] = [];
    let first: Headers | undefined;
    for (let i = 0; i < 5; i++) {
      const answer = await get(edge.url, entity("e1"));
      statuses.push(answer.status);
      first ??= answer.headers;
    }
    assert.deepEqual(statuses.slice(0, 3), [200, 200, 200]);
    assert.ok(statuses.slice(3).every((status) => status === 429), `statuses ${statuses.join(",")}`);
    assert.match(first!.get("ratelimit-policy") ?? "", /^"principal";q=3;w=6, "tenant";q=2000;w=2$/);
    assert.match(first!.get("ratelimit") ?? "", /^"principal";r=2;t=\d+$/);

    const refused = await get(edge.url, entity("e1"));
    assert.equal(refused.status, 429);
    const retryAfter = Number(refused.headers.get("retry-after"));
    assert.ok(retryAfter >= 1 && retryAfter <= 2, `retry-after ${retryAfter}`);
    assert.match(refused.headers.get("ratelimit") ?? "", /^"principal";r=0;t=[3-6]$/);
    assert.equal(refused.body.code, 8);
    const info = refused.body.details.find((detail) => detail["@type"].endsWith("ErrorInfo"))!;
    assert.equal(info.reason, "RATE_LIMITED");
    assert.equal(info.metadata?.policy, "principal");
    const retryMs = Number(info.metadata?.retry_after_ms);
    assert.ok(retryMs > 0 && retryMs <= 2_000, `retry_after_ms ${retryMs}`);
    const retryInfo = refused.body.details.find((detail) => detail["@type"].endsWith("RetryInfo"));
    assert.match(retryInfo?.retryDelay ?? "", /^[012](\.\d+)?s$/);

    // The refused requests were not charged: after the reported delay one request passes again.
    const passed = await waitFor(async () => ((await get(edge.url, entity("e1"))).status === 200 ? true : undefined), { what: "the bucket to refill", timeoutMs: retryMs + 2_000, everyMs: Math.max(20, retryMs / 4) });
    assert.equal(passed, true);
    await edge.stop();
  });

  test("reads with min_version (which bypass the cache) have a stricter bucket of their own; plain reads still pass", async () => {
    const edge = await fx.startEdge({ rateLimit: { limiter: limiter({ principal: { rps: 100, burst: 100 }, freshReads: { rps: 0.5, burst: 2 } }) } });
    const fresh = [];
    for (let i = 0; i < 4; i++) fresh.push((await get(edge.url, `${entity("e1")}?min_version=999999`)).status);
    assert.deepEqual(fresh, [200, 200, 429, 429]);
    const refused = await get(edge.url, `${entity("e1")}?minVersion=5`);
    assert.equal(refused.body.details[0]?.metadata?.policy, "fresh-read");
    assert.match(refused.headers.get("ratelimit-policy") ?? "", /"fresh-read";q=2;w=4/);
    for (let i = 0; i < 5; i++) assert.equal((await get(edge.url, entity("e1"))).status, 200);
    assert.equal((await get(edge.url, `${entity("e1")}?min_version=0`)).status, 200, "min_version=0 is a plain read");
    await edge.stop();
  });

  test("a route override replaces the principal default on its route only; the tenant quota holds across principals", async () => {
    const edge = await fx.startEdge({
      rateLimit: {
        limiter: limiter({ principal: { rps: 100, burst: 100 }, routes: { "umw.v1.QueryService/ListEntities": { rps: 0.1, burst: 1 } }, tenant: { rps: 0.1, burst: 6 }, tenants: { big: { rps: 100, burst: 100 } } }),
      },
      auth: issuer.auth(),
    });
    const list = "/v1/tenants/big/types/book/entities";
    const big = await as("big", "alice");
    assert.equal((await get(edge.url, list, big)).status, 200);
    const second = await get(edge.url, list, big);
    assert.equal(second.status, 429);
    assert.equal(second.body.details[0]?.metadata?.policy, "route");
    assert.equal((await get(edge.url, entity("e1", "big"), big)).status, 200, "other routes keep the principal's bucket");

    // Tenant t2: a quota of 6 for all its principals together; alice and bob each have 100.
    const statuses = [];
    const [alice, bob] = [await as("t2", "alice"), await as("t2", "bob")];
    for (let i = 0; i < 8; i++) statuses.push((await get(edge.url, entity("e1", "t2"), i % 2 ? bob : alice)).status);
    assert.deepEqual(statuses, [200, 200, 200, 200, 200, 200, 429, 429]);
    const refused = await get(edge.url, entity("e1", "t2"), await as("t2", "carol"));
    assert.equal(refused.body.details[0]?.metadata?.policy, "tenant");
    assert.equal((await get(edge.url, entity("e1", "t3"), await as("t3", "carol"))).status, 200, "another tenant is not affected");
    await edge.stop();
  });

  test("two edge instances (each its own limiter and Redis connection) share one budget", async () => {
    const shared = `${prefix}shared:`;
    const rules = { principal: { rps: 0.1, burst: 10 } };
    const one = await fx.startEdge({ rateLimit: { limiter: limiter(rules, { keyPrefix: shared }) } });
    const two = await fx.startEdge({ rateLimit: { limiter: limiter(rules, { keyPrefix: shared }) } });
    const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => get(i % 2 ? two.url : one.url, entity("e1"))));
    const allowed = answers.filter((answer) => answer.status === 200);
    assert.equal(allowed.length, 10, `allowed ${allowed.length} of 30 across two edges`);
    assert.equal(answers.filter((answer) => answer.status === 429).length, 20);
    // Each edge served some of the ten: the budget is common, not per edge.
    assert.ok(answers.some((answer, i) => i % 2 === 0 && answer.status === 200) && answers.some((answer, i) => i % 2 === 1 && answer.status === 200));
    await Promise.all([one.stop(), two.stop()]);
  });

  test("Connect calls are charged to the same buckets as REST (route = gRPC method)", async () => {
    const edge = await fx.startEdge({ rateLimit: { limiter: limiter({ principal: { rps: 0.1, burst: 2 } }) } });
    assert.equal((await get(edge.url, entity("e1"))).status, 200);
    const connect = () =>
      fetch(`${edge.url}/umw.v1.QueryService/GetEntity`, {
        method: "POST",
        headers: { "content-type": "application/json", "connect-protocol-version": "1" },
        body: JSON.stringify({ tenant: "t1", type: "book", id: "e1" }),
      });
    const ok = await connect();
    assert.equal(ok.status, 200);
    assert.match(ok.headers.get("ratelimit") ?? "", /"principal";r=0/);
    await ok.body?.cancel();
    const refused = await connect();
    assert.equal(refused.status, 429);
    const body = (await refused.json()) as { code: string; details: { type: string }[] };
    assert.equal(body.code, "resource_exhausted");
    assert.ok(body.details.some((detail) => detail.type === "google.rpc.ErrorInfo") && body.details.some((detail) => detail.type === "google.rpc.RetryInfo"));
    assert.ok(Number(refused.headers.get("retry-after")) >= 1);
    await edge.stop();
  });

  test("Redis down: fail-open lets requests through, fail-closed refuses them with 503 RATE_LIMITER_UNAVAILABLE", async () => {
    const dead = `redis://127.0.0.1:${await freePort()}`;
    const open = await fx.startEdge({ rateLimit: { limiter: limiter({}, { redisUrl: dead, failureMode: "open" }) } });
    for (let i = 0; i < 3; i++) assert.equal((await get(open.url, entity("e1"))).status, 200);
    const closed = await fx.startEdge({ rateLimit: { limiter: limiter({}, { redisUrl: dead, failureMode: "closed" }) } });
    const refused = await get(closed.url, entity("e1"));
    assert.equal(refused.status, 503);
    assert.equal(refused.body.details[0]?.reason, "RATE_LIMITER_UNAVAILABLE");
    assert.equal(refused.headers.get("retry-after"), "1");
    await Promise.all([open.stop(), closed.stop()]);
  });
});
