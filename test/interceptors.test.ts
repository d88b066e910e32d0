import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { QueryService } from "../gen/umw/v1/query_pb.js";
import { RealtimeService } from "../gen/umw/v1/realtime_pb.js";
import { MeshServer } from "../runtime/server.js";
import { createClient, ServiceClient, wireError } from "../runtime/client.js";
import { clientCredentials, serverCredentials } from "../runtime/tls.js";
import { Code, RpcError } from "../runtime/errors.js";
import { rootLogger } from "../runtime/logger.js";
import { Counter, countOf, Histogram, Registry, valueOf } from "../runtime/metrics.js";
import { prometheusCallMetrics } from "../runtime/interceptor-metrics.js";
import type { ClientInterceptor, ServerInterceptor } from "../runtime/interceptor.js";
import { testCerts, type TestCerts } from "./support/certs.js";

const log = rootLogger("silent");

/** Refuses the methods of a deny list: what an authorization interceptor would do, by peer and method. */
function denyMethods(names: readonly string[], seen: { requestId?: string; peer?: string }[]): ServerInterceptor {
  return (next) => async (req) => {
    // The default interceptors ran first: the request id and the peer are known here.
    seen.push({ requestId: req.context.requestId, peer: req.context.peer });
    if (names.includes(req.method.name)) {
      throw RpcError.fromWire(Code.PERMISSION_DENIED, "METHOD_DENIED", `${req.context.peer} may not call ${req.method.name}`, { method: req.method.name });
    }
    return next(req);
  };
}

describe("interceptor chains", () => {
  let certs: TestCerts;
  let server: MeshServer;
  let address: string;
  const seen: { requestId?: string; peer?: string }[] = [];
  const handled: string[] = [];
  const registry = new Registry();

  before(async () => {
    certs = testCerts(["query", "cli"]);
    server = new MeshServer({
      name: "query",
      host: "127.0.0.1",
      port: 0,
      credentials: serverCredentials(certs.identity("query")),
      log,
      interceptors: [denyMethods(["BatchGetEntities", "Subscribe"], seen)],
      metrics: prometheusCallMetrics("server", registry),
    });
    server.addService(QueryService, {
      async getEntity(request, ctx) {
        handled.push("GetEntity");
        if (request.id === "crash") throw new Error("a bug with secret details");
        return { entity: { tenant: request.tenant, type: request.type, id: request.id, version: 1n, data: { seenHeader: ctx.headers["x-added-by-client"] ?? "" } } };
      },
      async batchGetEntities() {
        handled.push("BatchGetEntities");
        return {};
      },
      async listEntities() {
        handled.push("ListEntities");
        return {};
      },
    });
    server.addService(RealtimeService, {
      async *subscribe() {
        handled.push("Subscribe");
        yield { position: "1" };
      },
    });
    address = `127.0.0.1:${await server.start()}`;
  });

  after(async () => {
    await server.stop();
    certs.remove();
  });

  test("a server interceptor added by option refuses a unary call: PERMISSION_DENIED with its reason, the handler never runs", async () => {
    const client = createClient(QueryService, address, clientCredentials(certs.identity("cli")));
    const error = await client.batchGetEntities({ tenant: "t", type: "book", ids: ["a"] }, { headers: { "x-request-id": "req-deny-unary" } }).catch((caught: unknown) => caught);
    assert.ok(error instanceof RpcError, String(error));
    assert.equal(error.code, Code.PERMISSION_DENIED);
    assert.equal(error.reason, "METHOD_DENIED");
    assert.deepEqual(error.metadata, { method: "BatchGetEntities" });
    assert.ok(!handled.includes("BatchGetEntities"));
    assert.ok(seen.some((entry) => entry.requestId === "req-deny-unary" && entry.peer === "cli"), JSON.stringify(seen));
    // Methods not on the list pass the same chain.
    const response = await client.getEntity({ tenant: "t", type: "book", id: "a" });
    assert.equal(response.entity?.id, "a");
    client.close();
  });

  test("the same interceptor refuses a server-streaming call before any message", async () => {
    const client = createClient(RealtimeService, address, clientCredentials(certs.identity("cli")));
    const received: unknown[] = [];
    const error = await (async () => {
      for await (const message of client.subscribe({ tenant: "t", topics: [] })) received.push(message);
    })().catch((caught: unknown) => caught);
    assert.ok(error instanceof RpcError, String(error));
    assert.equal(error.code, Code.PERMISSION_DENIED);
    assert.equal(error.reason, "METHOD_DENIED");
    assert.deepEqual(received, []);
    assert.ok(!handled.includes("Subscribe"));
    client.close();
  });

  test("error mapping: a handler's bug is INTERNAL without its details; the wire error stays the cause", async () => {
    const client = new ServiceClient(QueryService, address, clientCredentials(certs.identity("cli")));
    const error = await client.unary(QueryService.method.getEntity, { tenant: "t", type: "book", id: "crash" }).catch((caught: unknown) => caught);
    assert.ok(error instanceof RpcError, String(error));
    assert.equal(error.code, Code.INTERNAL);
    assert.equal(error.reason, "INTERNAL");
    assert.doesNotMatch(error.message, /secret/);
    assert.equal(wireError(error)?.code, Code.INTERNAL);
    client.close();
  });

  test("a client interceptor added by option runs on every call; its header reaches the server", async () => {
    const calls: string[] = [];
    const addHeader: ClientInterceptor = (next) => (req) => {
      calls.push(req.method.name);
      req.header.set("x-added-by-client", "yes");
      return next(req);
    };
    const client = createClient(QueryService, address, clientCredentials(certs.identity("cli")), {}, { interceptors: [addHeader] });
    const response = await client.getEntity({ tenant: "t", type: "book", id: "b" });
    assert.equal(response.entity?.data?.seenHeader, "yes");
    assert.deepEqual(calls, ["GetEntity"]);
    client.close();
  });

  test("the metrics hook counts every call by method and code", async () => {
    const metric = registry.getSingleMetric("rpc_server_calls_total");
    assert.ok(metric instanceof Counter, "the calls counter is registered");
    const duration = registry.getSingleMetric("rpc_server_duration_seconds");
    assert.ok(duration instanceof Histogram, "the duration histogram is registered");
    const calls = metric;
    const getOk = { rpc_system: "grpc", rpc_service: "umw.v1.QueryService", rpc_method: "GetEntity", rpc_grpc_status_code: "0" };
    const subscribeDenied = { rpc_system: "grpc", rpc_service: "umw.v1.RealtimeService", rpc_method: "Subscribe", rpc_grpc_status_code: "7" };
    const before = { ok: await valueOf(calls, getOk), denied: await valueOf(calls, subscribeDenied), okSeconds: await countOf(duration, getOk) };
    const query = createClient(QueryService, address, clientCredentials(certs.identity("cli")));
    const realtime = createClient(RealtimeService, address, clientCredentials(certs.identity("cli")));
    await query.getEntity({ tenant: "t", type: "book", id: "c" });
    await (async () => {
      for await (const _ of realtime.subscribe({ tenant: "t", topics: [] })) void _;
    })().catch(() => undefined);
    assert.equal(await valueOf(calls, getOk), before.ok + 1);
    assert.equal(await valueOf(calls, subscribeDenied), before.denied + 1);
    // Unary calls have a duration; a stream's lifetime is not a latency.
    assert.equal(await countOf(duration, getOk), before.okSeconds + 1);
    assert.equal(await countOf(duration, subscribeDenied), 0);
    assert.match(await registry.metrics(), /rpc_server_duration_seconds_count\{rpc_system="grpc",rpc_service="umw.v1.QueryService",rpc_method="GetEntity",rpc_grpc_status_code="0"\} \d+/);
    query.close();
    realtime.close();
  });
});
