// Browser protocols through the edge: Connect (binary and JSON) and gRPC-web with the connect-web
// transports on Node's fetch, and gRPC over the optional h2c port; unary and server-streaming.
//
//   node --import tsx --test test/edge/*.test.ts
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { connect as http2Connect, type ClientHttp2Session } from "node:http2";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createRegistry } from "@bufbuild/protobuf";
import { ErrorInfoSchema, file_google_rpc_error_details } from "../../gen/google/rpc/error_details_pb.js";
import { CommandService, CommandState } from "../../gen/umw/v1/command_pb.js";
import { QueryService } from "../../gen/umw/v1/query_pb.js";
import type { RunningEdge } from "../../services/edge/index.js";
import { startFixture, type Fixture } from "./fixtures.js";

let fx: Fixture;
let h2cEdge: RunningEdge;
before(async () => {
  fx = await startFixture();
  h2cEdge = await fx.startEdge({ h2cPort: 0 });
});
after(async () => {
  await fx?.close();
});

// A JSON client needs the types of Any values it may meet (google.rpc.Status details in CommandStatus).
const jsonOptions = { registry: createRegistry(file_google_rpc_error_details) };

const transports: [name: string, make: () => Transport][] = [
  ["Connect (binary)", () => createConnectTransport({ baseUrl: fx.url, useBinaryFormat: true })],
  ["Connect (JSON)", () => createConnectTransport({ baseUrl: fx.url, jsonOptions })],
  ["gRPC-web (binary)", () => createGrpcWebTransport({ baseUrl: fx.url, useBinaryFormat: true })],
  ["gRPC-web (JSON)", () => createGrpcWebTransport({ baseUrl: fx.url, jsonOptions })],
  ["gRPC over h2c", () => createGrpcTransport({ baseUrl: `http://127.0.0.1:${h2cEdge.h2cPort}` })],
];

function reasonOf(error: unknown): string | undefined {
  assert.ok(error instanceof ConnectError, `expected a ConnectError, got ${String(error)}`);
  return error.findDetails(ErrorInfoSchema)[0]?.reason;
}

for (const [name, make] of transports) {
  describe(name, () => {
    test("unary call, with upstream headers and the request id", async () => {
      const requestId = `rid-${name.replace(/\W+/g, "-")}`;
      const client = createClient(QueryService, make());
      let headers: Headers | undefined;
      const response = await client.getEntity(
        { tenant: "t1", type: "book", id: "c1", minVersion: 12n },
        { headers: { "x-request-id": requestId }, onHeader: (received) => (headers = received) },
      );
      assert.equal(response.entity?.id, "c1");
      assert.equal(response.entity?.version, 12n);
      assert.deepEqual(response.entity?.data, { name: "c1", n: 1 });
      assert.equal(headers?.get("umw-cache-status"), "umw; hit; ttl=376");
      assert.equal(headers?.get("x-request-id"), requestId);
      assert.equal(fx.last("GetEntity").headers["x-request-id"], requestId);
    });

    test("errors keep code, message, ErrorInfo and upstream headers", async () => {
      const client = createClient(QueryService, make());
      const error = await client.getEntity({ tenant: "t1", type: "book", id: "missing" }).then(
        () => assert.fail("expected an error"),
        (caught: unknown) => caught,
      );
      assert.ok(error instanceof ConnectError);
      assert.equal(error.code, Code.NotFound);
      assert.equal(error.rawMessage, "no such entity");
      const info = error.findDetails(ErrorInfoSchema)[0];
      assert.equal(info?.reason, "ENTITY_NOT_FOUND");
      assert.equal(info?.domain, "umw.dev");
      assert.deepEqual(info?.metadata, { type: "book", id: "missing" });
      assert.equal(error.metadata.get("umw-cache-status"), "umw; hit; detail=negative");
      for (const [id, code, reason] of [
        ["forbidden", Code.PermissionDenied, "FORBIDDEN"],
        ["limited", Code.ResourceExhausted, "RATE_LIMITED"],
        ["boom", Code.Internal, "INTERNAL"],
      ] as const) {
        const failure = await client.getEntity({ tenant: "t1", type: "book", id }).catch((caught: unknown) => caught);
        assert.equal((failure as ConnectError).code, code, id);
        assert.equal(reasonOf(failure), reason);
      }
    });

    test("writes forward idempotency-key, never the token or a client's x-umw-* headers", async () => {
      const client = createClient(CommandService, make());
      const response = await client.createEntity(
        { tenant: "t2", type: "book", data: { title: "Dune" } },
        { headers: { "idempotency-key": '"key-9"', authorization: "Bearer xyz", "x-umw-principal": "root", "x-umw-tenant": "t9" } },
      );
      assert.equal(response.receipt?.state, CommandState.ACCEPTED);
      const call = fx.last("CreateEntity");
      assert.equal(call.headers["idempotency-key"], '"key-9"');
      assert.equal(call.headers.authorization, undefined);
      assert.equal(call.headers["x-umw-principal"], undefined);
      assert.equal(call.headers["x-umw-tenant"], undefined);
      assert.deepEqual(call.request.data, { title: "Dune" });
    });

    test("server streaming delivers every message", async () => {
      const client = createClient(CommandService, make());
      let headers: Headers | undefined;
      const states: CommandState[] = [];
      for await (const message of client.watchCommand({ tenant: "t1", commandId: "s1" }, { onHeader: (received) => (headers = received) })) {
        states.push(message.command!.state);
      }
      assert.deepEqual(states, [CommandState.ACCEPTED, CommandState.ACCEPTED, CommandState.APPLIED]);
      assert.equal(headers?.get("umw-cache-status"), "umw; fwd=uri-miss");
    });

    test("a stream failing midway gives the messages before, then the error with its reason", async () => {
      const client = createClient(CommandService, make());
      const states: CommandState[] = [];
      const error = await (async () => {
        for await (const message of client.watchCommand({ tenant: "t1", commandId: "fails" })) states.push(message.command!.state);
      })().then(
        () => assert.fail("expected an error"),
        (caught: unknown) => caught,
      );
      assert.deepEqual(states, [CommandState.ACCEPTED]);
      assert.equal((error as ConnectError).code, Code.Aborted);
      assert.equal(reasonOf(error), "WATCH_LOST");
    });

    test("a stream failing before any message", async () => {
      const client = createClient(CommandService, make());
      const error = await (async () => {
        for await (const _ of client.watchCommand({ tenant: "t1", commandId: "missing" })) assert.fail("no message expected");
      })().catch((caught: unknown) => caught);
      assert.equal((error as ConnectError).code, Code.NotFound);
      assert.equal(reasonOf(error), "COMMAND_NOT_FOUND");
    });
  });
}

/** One HTTP/2 request on a session: status, headers and body text. */
function h2Request(session: ClientHttp2Session, headers: Record<string, string>, body?: string) {
  return new Promise<{ status: number; headers: Record<string, unknown>; text: string }>((resolve, reject) => {
    const stream = session.request(headers, { endStream: body === undefined });
    let text = "";
    let received: Record<string, unknown> = {};
    stream.setEncoding("utf8");
    stream.on("response", (responseHeaders) => (received = responseHeaders));
    stream.on("data", (chunk: string) => (text += chunk));
    stream.on("end", () => resolve({ status: Number(received[":status"]), headers: received, text }));
    stream.on("error", reject);
    if (body !== undefined) stream.end(body);
  });
}

describe("REST over h2c", () => {
  test("GET and a POST body without content-length", async () => {
    const session = http2Connect(`http://127.0.0.1:${h2cEdge.h2cPort}`);
    try {
      const get = await h2Request(session, { ":method": "GET", ":path": "/v1/tenants/t1/types/book/entities/h2" });
      assert.equal(get.status, 200);
      assert.equal(get.headers.etag, 'W/"7"');
      assert.equal(JSON.parse(get.text).entity.id, "h2");
      const post = await h2Request(session, { ":method": "POST", ":path": "/v1/tenants/t1/types/book/entities", "content-type": "application/json" }, '{"via":"h2c"}');
      assert.equal(post.status, 202);
      assert.deepEqual(fx.last("CreateEntity").request.data, { via: "h2c" });
      const missing = await h2Request(session, { ":method": "GET", ":path": "/nowhere" });
      assert.equal(missing.status, 404);
    } finally {
      session.close();
    }
  });
});

describe("edge behaviour over Connect", () => {
  test("the caller's timeout applies to the upstream call", async () => {
    const client = createClient(QueryService, createConnectTransport({ baseUrl: fx.url }));
    const started = Date.now();
    const error = await client.getEntity({ tenant: "t1", type: "book", id: "slow" }, { timeoutMs: 200 }).catch((caught: unknown) => caught);
    assert.equal((error as ConnectError).code, Code.DeadlineExceeded);
    assert.ok(Date.now() - started < 1_500);
  });

  test("an upstream that is down is Unavailable with reason UPSTREAM_UNAVAILABLE", async () => {
    const edge = await fx.startEdge({ upstreams: [{ service: QueryService, address: fx.deadAddress }] });
    for (const transport of [createConnectTransport({ baseUrl: edge.url }), createGrpcWebTransport({ baseUrl: edge.url })]) {
      const error = await createClient(QueryService, transport).getEntity({ tenant: "t1", type: "book", id: "e1" }).catch((caught: unknown) => caught);
      assert.equal((error as ConnectError).code, Code.Unavailable);
      assert.equal(reasonOf(error), "UPSTREAM_UNAVAILABLE");
    }
    await edge.stop();
  });

  test("CORS preflight for a Connect call: answered for an allowed origin, without CORS headers for another", async () => {
    const edge = await fx.startEdge({ corsOrigins: ["http://localhost:3000"] });
    const preflight = (origin: string) =>
      fetch(`${edge.url}/umw.v1.QueryService/GetEntity`, {
        method: "OPTIONS",
        headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "connect-protocol-version,content-type" },
      });
    const response = await preflight("http://localhost:3000");
    assert.equal(response.status, 204);
    assert.equal(response.headers.get("access-control-allow-origin"), "http://localhost:3000");
    assert.match(response.headers.get("access-control-allow-headers") ?? "", /x-grpc-web/);
    const stranger = await preflight("http://localhost:3001");
    assert.equal(stranger.headers.get("access-control-allow-origin"), null);
    assert.equal(stranger.headers.get("access-control-allow-headers"), null);
    await edge.stop();
  });

  test("stopping the edge ends open streams with Unavailable", async () => {
    const edge = await fx.startEdge();
    const client = createClient(CommandService, createConnectTransport({ baseUrl: edge.url }));
    const states: CommandState[] = [];
    const done = (async () => {
      for await (const message of client.watchCommand({ tenant: "t1", commandId: "slow" })) {
        states.push(message.command!.state);
        if (states.length === 1) void edge.stop();
      }
    })().catch((caught: unknown) => caught);
    const error = await done;
    assert.equal(states.length, 1);
    assert.equal((error as ConnectError).code, Code.Unavailable);
    assert.equal(reasonOf(error), "SHUTTING_DOWN");
  });
});
