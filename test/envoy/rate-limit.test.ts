// Envoy reaches the same rate limits as the Node edge: a real Envoy with the ratelimit filter asks
// umw's RateLimitService (envoy.service.ratelimit.v3, mTLS), which charges the same Redis buckets.
// A burst through Envoy gets 429 RATE_LIMITED with Retry-After and RateLimit headers, and a Node
// edge in front of the same client shares that budget.
//
//   node --import tsx --test test/envoy/rate-limit.test.ts
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { fromBinary } from "@bufbuild/protobuf";
import { RateLimitService } from "../../gen/envoy/service/ratelimit/v3/rls_pb.js";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { Code as ConnectCode, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { QueryService } from "../../gen/umw/v1/query_pb.js";
import { MeshServer } from "../../runtime/server.js";
import { clientCredentials, serverCredentials } from "../../runtime/tls.js";
import { startEdge, type RunningEdge } from "../../services/edge/index.js";
import { RateLimiter, type FailureMode } from "../../services/ratelimit/limiter.js";
import { rateLimitServiceHandlers } from "../../services/ratelimit/rls-service.js";
import { DEFAULT_RULES } from "../../services/ratelimit/rules.js";
import { testCerts, type TestCerts } from "../support/certs.js";
import { infra, runId } from "../support/env.js";
import { requireEnvoy, startPolicyServer, startStaticEnvoy, type StaticEnvoy } from "./support.js";
import { dropRedisPrefix } from "../support/redis.js";

const log = pino({ level: "silent" });
const prefix = `test:${runId()}:ratelimit:`;
const rules = { ...DEFAULT_RULES, principal: { rps: 0.1, burst: 5 } };

describe("rate limits through Envoy (real Envoy, real Redis)", () => {
  let certs: TestCerts;
  let dir: string;
  let query: MeshServer;
  let rls: MeshServer;
  let policy: Awaited<ReturnType<typeof startPolicyServer>>;
  let envoy: StaticEnvoy;
  let envoyUrl: string;
  let nodeEdge: RunningEdge;
  const limiters: RateLimiter[] = [];
  const limiter = (failureMode: FailureMode = "open") => {
    const created = new RateLimiter({ redisUrl: infra.redisUrl, keyPrefix: prefix, rules, failureMode, log });
    limiters.push(created);
    return created;
  };

  before(async () => {
    requireEnvoy();
    certs = testCerts(["query", "ratelimit", "policy", "envoy", "edge"]);
    dir = mkdtempSync(join(tmpdir(), "umw-envoy-ratelimit-"));
    query = new MeshServer({ name: "query", host: "127.0.0.1", port: 0, credentials: serverCredentials(certs.identity("query")), log, drainTimeoutMs: 200 });
    query.addService(QueryService, {
      async getEntity(request) {
        return { entity: { tenant: request.tenant, type: request.type, id: request.id, version: 1n, data: { title: "through Envoy" } } };
      },
      async batchGetEntities() {
        return {};
      },
      async listEntities() {
        return {};
      },
    });
    const queryPort = await query.start();
    rls = new MeshServer({ name: "ratelimit", host: "127.0.0.1", port: 0, credentials: serverCredentials(certs.identity("ratelimit")), log, drainTimeoutMs: 200 });
    rls.addService(RateLimitService, rateLimitServiceHandlers(limiter()));
    const rlsPort = await rls.start();
    // Envoy's ext_authz asks the policy service first; anonymous requests pass it as Envoy's own principal.
    policy = await startPolicyServer(certs.identity("policy"));

    envoy = await startStaticEnvoy({
      dir,
      title: "test: Envoy with umw's rate limit service",
      certsDir: certs.dir,
      upstreams: { query: { host: "127.0.0.1", port: queryPort }, policy: { host: "127.0.0.1", port: policy.port } },
      rateLimit: { service: { host: "127.0.0.1", port: rlsPort }, failureMode: "open", timeoutMs: 1_000 },
      // The query host passed its health check: requests from here on reach it (and are charged).
      healthy: ["query"],
    });
    envoyUrl = envoy.url;
    nodeEdge = await startEdge({
      port: 0,
      upstreams: [{ service: QueryService, address: `127.0.0.1:${queryPort}` }],
      credentials: clientCredentials(certs.identity("edge")),
      rateLimit: { limiter: limiter() },
      // Anonymous on both edges: the shared budget is the client address's (auth is test/envoy/auth.test.ts's subject).
      auth: { mode: "none" },
      log,
    });
  });

  after(async () => {
    await envoy?.stop();
    await nodeEdge?.stop();
    await Promise.all([query?.stop(), rls?.stop(), policy?.stop()]);
    await Promise.all(limiters.map((created) => created.close()));
    await dropRedisPrefix(prefix);
    certs?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("a burst through Envoy gets 429 RATE_LIMITED with Retry-After and RateLimit headers; the Node edge shares the budget", async () => {
    const path = "/v1/tenants/acme/types/todo/entities/e1";
    const answers: { status: number; headers: Headers; body: string }[] = [];
    for (let i = 0; i < 7; i++) {
      const response = await fetch(envoyUrl + path);
      answers.push({ status: response.status, headers: response.headers, body: await response.text() });
    }
    assert.deepEqual(
      answers.map((answer) => answer.status),
      [200, 200, 200, 200, 200, 429, 429],
      answers.map((answer) => `${answer.status} ${answer.body}`).join("\n"),
    );
    assert.match(answers[0]!.headers.get("ratelimit-policy") ?? "", /^"principal";q=5;w=50, "tenant";q=2000;w=2$/);
    assert.match(answers[0]!.headers.get("ratelimit") ?? "", /^"principal";r=4;t=\d+$/);
    const refused = answers[5]!;
    assert.ok(Number(refused.headers.get("retry-after")) >= 1, `retry-after ${refused.headers.get("retry-after")}`);
    assert.match(refused.headers.get("ratelimit") ?? "", /^"principal";r=0;t=\d+$/);
    assert.match(refused.headers.get("content-type") ?? "", /application\/json/);
    const status = JSON.parse(refused.body) as { code: number; details: { "@type": string; reason?: string; metadata?: Record<string, string> }[] };
    assert.equal(status.code, 8);
    assert.equal(status.details[0]?.reason, "RATE_LIMITED");
    assert.equal(status.details[0]?.metadata?.policy, "principal");
    assert.ok(status.details.some((detail) => detail["@type"].endsWith("google.rpc.RetryInfo")));

    // The same client through the Node edge: the same bucket (principal ip:127.0.0.1, tenant acme), already used up.
    const viaNode = await fetch(nodeEdge.url + path);
    assert.equal(viaNode.status, 429);
    assert.equal(((await viaNode.json()) as { details: { reason?: string }[] }).details[0]?.reason, "RATE_LIMITED");
    // The principal's bucket is per tenant: the same client in another tenant has its own.
    const otherTenant = await fetch(envoyUrl + "/v1/tenants/globex/types/todo/entities/e1");
    assert.equal(otherTenant.status, 200);
    await otherTenant.arrayBuffer();
  });

  test("gRPC paths (gRPC-web, Connect, gRPC) are charged by method; a refused gRPC-web call carries the RESOURCE_EXHAUSTED Status in grpc-status-details-bin", async () => {
    const call = () =>
      fetch(`${envoyUrl}/umw.v1.QueryService/GetEntity`, {
        method: "POST",
        headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" },
        body: new Uint8Array([0, 0, 0, 0, 0]),
      });
    const statuses: string[] = [];
    let details: string | null = null;
    for (let i = 0; i < 7; i++) {
      const response = await call();
      await response.arrayBuffer();
      // An allowed call's status is in the body's trailer frame: only a trailers-only refusal has it among the headers.
      statuses.push(response.headers.get("grpc-status") ?? `http ${response.status}`);
      if (response.headers.get("grpc-status")) assert.equal(response.status, 200, "a gRPC-web answer is HTTP 200");
      if (response.headers.get("grpc-status")) assert.match(response.headers.get("content-type") ?? "", /^application\/grpc-web/);
      details ??= response.headers.get("grpc-status-details-bin");
    }
    // Tenant unknown on a gRPC path: the principal's bucket ("-" tenant) alone, five then refused,
    // the refusal a gRPC-web answer (HTTP 200, grpc-status 8 RESOURCE_EXHAUSTED: local-replies.ts).
    assert.deepEqual(statuses, ["http 200", "http 200", "http 200", "http 200", "http 200", "8", "8"]);
    // The refusal's google.rpc.Status, with ErrorInfo RATE_LIMITED, as gRPC carries details.
    const status = fromBinary(StatusSchema, Buffer.from(details ?? "", "base64"));
    assert.equal(status.code, 8);
    assert.ok(status.details.some((detail) => detail.typeUrl.endsWith("google.rpc.ErrorInfo") && Buffer.from(detail.value).includes("RATE_LIMITED")));
    // A gRPC-web client (connect-web) reads it as the status it is, with its reason (the bucket refills in 10 s).
    const client = createClient(QueryService, createGrpcWebTransport({ baseUrl: envoyUrl, useBinaryFormat: true }));
    const refused = await client.getEntity({ tenant: "", type: "todo", id: "e1" }).then(
      () => assert.fail("expected RESOURCE_EXHAUSTED"),
      (caught: unknown) => ConnectError.from(caught),
    );
    assert.equal(refused.code, ConnectCode.ResourceExhausted, refused.message);
    assert.equal(refused.findDetails(ErrorInfoSchema)[0]?.reason, "RATE_LIMITED");
  });

  test("Envoy refuses a text/plain, form or untyped REST body with 415 UNSUPPORTED_MEDIA_TYPE, and allows no CORS origin by default", async () => {
    const path = "/v1/tenants/acme/types/todo/entities";
    for (const headers of [{ "content-type": "text/plain" }, { "content-type": "application/x-www-form-urlencoded" }, {}] as Record<string, string>[]) {
      const body = headers["content-type"] ? '{"data":{"title":"t"}}' : new Blob(['{"data":{"title":"t"}}']);
      const response = await fetch(envoyUrl + path, { method: "POST", headers: { "idempotency-key": '"k"', ...headers }, body });
      assert.equal(response.status, 415, JSON.stringify(headers));
      const status = (await response.json()) as { details: { reason?: string }[] };
      assert.equal(status.details[0]?.reason, "UNSUPPORTED_MEDIA_TYPE");
    }
    const preflight = await fetch(envoyUrl + path, { method: "OPTIONS", headers: { origin: "https://evil.example", "access-control-request-method": "POST", "access-control-request-headers": "content-type" } });
    await preflight.arrayBuffer();
    assert.equal(preflight.headers.get("access-control-allow-origin"), null);
    const read = await fetch(envoyUrl + "/v1/tenants/initech/types/todo/entities/e1", { headers: { origin: "https://evil.example" } });
    await read.arrayBuffer();
    assert.equal(read.headers.get("access-control-allow-origin"), null);
  });
});
