import { test } from "node:test";
import assert from "node:assert/strict";
import { rateLimitHeaders } from "./headers.js";
import { bucketsFor, DEFAULT_RULES } from "./rules.js";

test("a request is charged to its principal's (or route's) bucket, the fresh-read bucket for min_version reads, and its tenant's quota", () => {
  const rules = { ...DEFAULT_RULES, routes: { "umw.v1.CommandService/CreateEntity": { rps: 1, burst: 2 } }, tenants: { big: { rps: 9, burst: 9 } } };
  const plain = bucketsFor(rules, { tenant: "acme", subject: "user:a:b", route: "umw.v1.QueryService/GetEntity" });
  assert.deepEqual(plain.map((bucket) => [bucket.policy, bucket.key]), [["principal", "principal:acme:user%3Aa%3Ab"], ["tenant", "tenant:acme"]]);
  const fresh = bucketsFor(rules, { tenant: "big", subject: "ip:1.2.3.4", route: "umw.v1.QueryService/GetEntity", freshRead: true });
  assert.deepEqual(fresh.map((bucket) => bucket.policy), ["principal", "fresh-read", "tenant"]);
  assert.deepEqual(fresh[2]!.rule, { rps: 9, burst: 9 });
  const route = bucketsFor(rules, { tenant: undefined, subject: "ip:1.2.3.4", route: "umw.v1.CommandService/CreateEntity" });
  assert.deepEqual(route.map((bucket) => [bucket.policy, bucket.key, bucket.rule.burst]), [["route", "route:-:ip%3A1.2.3.4:umw.v1.CommandService%2FCreateEntity", 2]]);
});

test("RateLimit headers name the tightest policy; Retry-After only on a refusal, rounded up to whole seconds", () => {
  const policies = [
    { policy: "principal", quota: 200, windowSeconds: 2, remaining: 0, resetMs: 1_990, retryAfterMs: 1_001 },
    { policy: "tenant", quota: 2000, windowSeconds: 2, remaining: 1500, resetMs: 500, retryAfterMs: 0 },
  ];
  assert.deepEqual(rateLimitHeaders({ outcome: "limited", policies, retryAfterMs: 1_001 }), {
    "ratelimit-policy": '"principal";q=200;w=2, "tenant";q=2000;w=2',
    ratelimit: '"principal";r=0;t=2',
    "retry-after": "2",
  });
  assert.equal(rateLimitHeaders({ outcome: "allowed", policies: policies.map((policy) => ({ ...policy, retryAfterMs: 0 })), retryAfterMs: 0 })["retry-after"], undefined);
  assert.deepEqual(rateLimitHeaders({ outcome: "unavailable", allowed: true, policies: [], retryAfterMs: 1_000 }), {});
  assert.deepEqual(rateLimitHeaders({ outcome: "unavailable", allowed: false, policies: [], retryAfterMs: 1_000 }), { "retry-after": "1" });
});
