import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { credentials, ServerCredentials } from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import { pino } from "pino";
import { QueryService, GetEntityRequestSchema } from "../gen/umw/v1/query_pb.js";
import { ServiceClient } from "./client.js";
import { Code, notFound } from "./errors.js";
import { InProcessTransport } from "./in-process-transport.js";
import { prometheusCallMetrics } from "./interceptor-metrics.js";
import { MeshAuthorization } from "./mesh-authorization.js";
import { Registry } from "./metrics.js";
import { MeshServer } from "./server.js";
import type { CallContext } from "./call-context.js";
import { rejection } from "../test/support/rejection.js";

const log = pino({ level: "silent" });
/** Nothing listens there: a call that reaches the network fails UNAVAILABLE. */
const NOWHERE = "127.0.0.1:1";

type GetEntity = (request: { tenant: string; type: string; id: string }, ctx: CallContext) => Promise<unknown>;

/** A QueryService whose GetEntity is `getEntity`, offered in process (never started: no socket at all). */
function setUp(getEntity: GetEntity, options: { authorization?: MeshAuthorization; peer?: string } = {}) {
  const registry = new Registry();
  const server = new MeshServer({
    name: "query",
    host: "127.0.0.1",
    port: 0,
    credentials: ServerCredentials.createInsecure(),
    log,
    metrics: prometheusCallMetrics("server", registry),
    authorization: options.authorization,
  });
  const unused = async () => {
    throw new Error("not called");
  };
  server.addService(QueryService, { getEntity, batchGetEntities: unused, listEntities: unused } as never);
  const transport = new InProcessTransport(registry);
  transport.register(server.inProcess());
  const client = new ServiceClient(QueryService, NOWHERE, credentials.createInsecure(), {
    metrics: prometheusCallMetrics("client", registry),
    inProcess: { transport, peer: options.peer ?? "edge" },
  });
  return { server, transport, client, registry };
}

const entity = (id: string) => ({ entity: { tenant: "acme", type: "todo", id, version: 3n } });
const request = { tenant: "acme", type: "todo", id: "x" };

describe("in-process transport", () => {
  test("answers through the server chain without a socket, counted by client, server and transport metrics", async () => {
    const { client, registry } = setUp(async (req, ctx) => {
      ctx.setHeader("umw-cache-status", "umw; hit");
      assert.equal(ctx.peer, "edge");
      assert.match(ctx.requestId, /\S/);
      return entity(req.id);
    });
    let headers: string | undefined;
    const response = await client.unary(QueryService.method.getEntity, request, { onHeaders: (h) => (headers = String(h.get("umw-cache-status")[0])) });
    assert.equal((response.message as unknown as { entity: { id: string } }).entity.id, "x");
    assert.equal(headers, "umw; hit");
    const text = await registry.metrics();
    assert.match(text, /^umw_in_process_calls_total\{service="umw.v1.QueryService",method="GetEntity"\} 1$/m);
    assert.match(text, /^rpc_server_calls_total\{[^}]*rpc_method="GetEntity",rpc_grpc_status_code="0"\} 1$/m);
    assert.match(text, /^rpc_client_calls_total\{[^}]*rpc_method="GetEntity",rpc_grpc_status_code="0"\} 1$/m);
  });

  test("the handler gets a copy: what it changes does not reach the caller's message", async () => {
    const { client } = setUp(async (req) => {
      req.id = "changed by the handler";
      return entity(req.id);
    });
    const message = create(GetEntityRequestSchema, request);
    await client.unary(QueryService.method.getEntity, message);
    assert.equal(message.id, "x");
    const init = { ...request };
    await client.unary(QueryService.method.getEntity, init);
    assert.equal(init.id, "x");
  });

  test("a handler's refusal arrives as the same RpcError (reason, metadata, headers set before it) and is counted", async () => {
    const { client, registry } = setUp(async (req, ctx) => {
      ctx.setHeader("umw-cache-status", "umw; hit; detail=negative");
      throw notFound("ENTITY_NOT_FOUND", "no such todo", { id: req.id });
    });
    const error = await rejection(client.unary(QueryService.method.getEntity, request));
    assert.equal(error.code, Code.NOT_FOUND);
    assert.equal(error.reason, "ENTITY_NOT_FOUND");
    assert.equal(error.metadata.id, "x");
    assert.equal(error.headers["umw-cache-status"], "umw; hit; detail=negative");
    assert.match(await registry.metrics(), /^rpc_server_calls_total\{[^}]*rpc_grpc_status_code="5"\} 1$/m);
  });

  test("a bug in the handler is INTERNAL to the caller, not its stack", async () => {
    const { client } = setUp(async () => {
      throw new TypeError("secret internals");
    });
    const error = await rejection(client.unary(QueryService.method.getEntity, request));
    assert.equal(error.code, Code.INTERNAL);
    assert.doesNotMatch(error.message, /secret internals/);
  });

  test("the deadline ends the call DEADLINE_EXCEEDED at the caller and aborts the handler's signal", async () => {
    let aborted: Promise<unknown> | undefined;
    const { client } = setUp(async (_req, ctx) => {
      aborted = new Promise((resolve) => ctx.signal.addEventListener("abort", () => resolve(ctx.signal.reason), { once: true }));
      assert.ok(ctx.deadline, "the handler sees the deadline");
      await aborted;
      throw new Error("aborted");
    });
    const started = Date.now();
    const error = await rejection(client.unary(QueryService.method.getEntity, request, { timeoutMs: 100 }));
    assert.equal(error.code, Code.DEADLINE_EXCEEDED);
    assert.ok(Date.now() - started < 2_000, "promptly");
    await aborted;
  });

  test("the caller's cancellation ends the call CANCELLED and aborts the handler's signal", async () => {
    const controller = new AbortController();
    let aborted!: Promise<void>;
    let enter!: () => void;
    const entered = new Promise<void>((resolve) => (enter = resolve));
    const { client } = setUp(async (_req, ctx) => {
      aborted = new Promise((resolve) => ctx.signal.addEventListener("abort", () => resolve(), { once: true }));
      enter();
      await aborted;
      return entity("late");
    });
    const call = client.unary(QueryService.method.getEntity, request, { signal: controller.signal });
    await entered;
    controller.abort();
    assert.equal((await rejection(call)).code, Code.CANCELLED);
    await aborted;
  });

  test("mesh authorization runs as the caller's identity: a peer the table does not allow, or an untrusted principal assertion, is refused", async () => {
    const authorization = new MeshAuthorization({ edge: ["umw.v1.QueryService/*"], canary: ["umw.v1.QueryService/*"] }, ["edge"]);
    let handled = 0;
    const getEntity: GetEntity = async (req) => {
      handled++;
      return entity(req.id);
    };
    const asEdge = setUp(getEntity, { authorization, peer: "edge" });
    await asEdge.client.unary(QueryService.method.getEntity, request, { headers: { "x-umw-principal": "alice" } });
    assert.equal(handled, 1);
    const asRelay = setUp(getEntity, { authorization, peer: "relay" });
    const denied = await rejection(asRelay.client.unary(QueryService.method.getEntity, request));
    assert.equal(denied.code, Code.PERMISSION_DENIED);
    assert.equal(denied.reason, "MESH_METHOD_DENIED");
    const asCanary = setUp(getEntity, { authorization, peer: "canary" });
    const asserted = await rejection(asCanary.client.unary(QueryService.method.getEntity, request, { headers: { "x-umw-principal": "alice" } }));
    assert.equal(asserted.reason, "PRINCIPAL_ASSERTION_DENIED");
    assert.equal(handled, 1, "no refused call reached the handler");
  });

  test("a service that is not (or no longer) in the process is called over the network", async () => {
    const { client, transport, server } = setUp(async (req) => entity(req.id));
    transport.unregister(server.inProcess());
    const error = await rejection(client.unary(QueryService.method.getEntity, request, { timeoutMs: 2_000 }));
    assert.equal(error.code, Code.UNAVAILABLE, "the network address has nothing listening");
    client.close();
  });
});
