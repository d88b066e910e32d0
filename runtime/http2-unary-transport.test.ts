// The lean unary transport against a real node:http2 server that plays the gRPC server by hand:
// framing, metadata, trailers-only answers, google.rpc.Status details, HTTP statuses, deadlines,
// cancellation, GOAWAY and reconnects, a server that dies mid-call.
//
//   node --import tsx --test runtime/http2-unary-transport.test.ts
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { constants, createServer, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from "node:http2";
import type { AddressInfo } from "node:net";
import { credentials, Metadata } from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { GetEntityRequestSchema, GetEntityResponseSchema, QueryService, type GetEntityResponse } from "../gen/umw/v1/query_pb.js";
import { ServiceClient } from "./client.js";
import { Code, RpcError } from "./errors.js";
import { Http2UnaryTransport, grpcTimeout, httpStatusCode } from "./http2-unary-transport.js";
import { prometheusCallMetrics } from "./interceptor-metrics.js";
import { Registry } from "./metrics.js";
import { rejection } from "../test/support/rejection.js";

/** What a test's server does with one call: the request headers and the decoded request are given. */
type Behaviour = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, request: Buffer) => void;

interface Seen {
  headers: IncomingHttpHeaders;
  body: Buffer;
  rstCode?: number;
}

let server: Http2Server;
let address: string;
let behaviour: Behaviour;
const seen: Seen[] = [];
const sessions = new Set<ServerHttp2Session>();
let sessionCount = 0;

before(async () => {
  server = createServer();
  server.on("session", (session) => {
    sessionCount++;
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
  });
  server.on("stream", (stream, headers) => {
    const chunks: Buffer[] = [];
    const record: Seen = { headers, body: Buffer.alloc(0) };
    seen.push(record);
    stream.on("close", () => (record.rstCode = stream.rstCode));
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("end", () => {
      record.body = Buffer.concat(chunks);
      if (!stream.destroyed) behaviour(stream, headers, record.body);
    });
    stream.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  for (const session of sessions) session.destroy();
  await new Promise((resolve) => server.close(resolve));
});

function frame(message: Uint8Array): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out.writeUInt32BE(message.length, 1);
  Buffer.from(message).copy(out, 5);
  return out;
}

const entityResponse = (id: string) => frame(toBinary(GetEntityResponseSchema, create(GetEntityResponseSchema, { entity: { tenant: "acme", type: "todo", id, version: 4n } })));

/** A normal answer: headers, the message (in `pieces` DATA frames), trailers. */
function answer(stream: ServerHttp2Stream, body: Buffer, { pieces = 1, headers = {} as Record<string, string>, trailers = { "grpc-status": "0" } as Record<string, string> } = {}): void {
  stream.respond({ ":status": 200, "content-type": "application/grpc", ...headers }, { waitForTrailers: true });
  stream.on("wantTrailers", () => stream.sendTrailers(trailers));
  const size = Math.ceil(body.length / pieces);
  for (let i = 0; i < pieces; i++) stream.write(body.subarray(i * size, (i + 1) * size));
  stream.end();
}

const request = { tenant: "acme", type: "todo", id: "e1" };

function client(transport = new Http2UnaryTransport(address)): ServiceClient {
  return new ServiceClient(QueryService, address, credentials.createInsecure(), {
    unaryTransport: transport,
    forwardMetadata: [],
    metrics: prometheusCallMetrics("client", new Registry()),
  });
}

const idOf = (message: unknown) => (message as GetEntityResponse).entity?.id;

describe("lean unary transport: the wire", () => {
  test("sends POST /pkg.Service/Method, application/grpc, te: trailers, grpc-timeout, metadata (-bin as base64) and one length-prefixed message; reassembles a response split over DATA frames", async () => {
    behaviour = (stream, _headers, body) => {
      const got = fromBinary(GetEntityRequestSchema, body.subarray(5));
      answer(stream, entityResponse(`${got.id}-back`), { pieces: 3, headers: { "umw-cache-status": "umw; hit" } });
    };
    const mesh = client();
    try {
      const metadata = new Metadata();
      metadata.set("x-request-id", "r-1");
      metadata.set("trace-bin", Buffer.from([0, 1, 2, 250]));
      let onHeaders: Metadata | undefined;
      const response = await mesh.unary(QueryService.method.getEntity, request, { headers: metadata, timeoutMs: 5_000, onHeaders: (h) => (onHeaders = h) });
      assert.equal(idOf(response.message), "e1-back");
      assert.deepEqual(response.header?.get("umw-cache-status"), ["umw; hit"]);
      assert.deepEqual(onHeaders?.get("umw-cache-status"), ["umw; hit"]);

      const { headers, body } = seen.at(-1)!;
      assert.equal(headers[":method"], "POST");
      assert.equal(headers[":path"], "/umw.v1.QueryService/GetEntity");
      assert.equal(headers["content-type"], "application/grpc");
      assert.equal(headers.te, "trailers");
      assert.match(String(headers["grpc-timeout"]), /^\d{1,8}m$/);
      assert.ok(Number(String(headers["grpc-timeout"]).slice(0, -1)) <= 5_000);
      assert.equal(headers["x-request-id"], "r-1");
      assert.deepEqual(Buffer.from(String(headers["trace-bin"]), "base64"), Buffer.from([0, 1, 2, 250]));
      assert.equal(body[0], 0, "not compressed");
      assert.equal(body.readUInt32BE(1), body.length - 5);
      assert.equal(fromBinary(GetEntityRequestSchema, body.subarray(5)).id, "e1");
    } finally {
      mesh.close();
    }
  });

  test("a trailers-only failure keeps its code, its percent-decoded message, its google.rpc.Status (ErrorInfo reason) and its trailers", async () => {
    const status = new RpcError(Code.NOT_FOUND, "ENTITY_NOT_FOUND", "no such entity: é 100%", { id: "e1" }).toServiceError();
    behaviour = (stream) => {
      stream.respond(
        {
          ":status": 200,
          "content-type": "application/grpc",
          "grpc-status": String(Code.NOT_FOUND),
          "grpc-message": encodeURIComponent("no such entity: é 100%"),
          "grpc-status-details-bin": status.metadata!.get("grpc-status-details-bin")[0]!.toString("base64"),
          "umw-cache-status": "umw; hit; detail=negative",
        },
        { endStream: true },
      );
    };
    const mesh = client();
    let headersSeen = false;
    try {
      const error = await rejection(mesh.unary(QueryService.method.getEntity, request, { onHeaders: () => (headersSeen = true) }));
      assert.equal(error.code, Code.NOT_FOUND);
      assert.equal(error.reason, "ENTITY_NOT_FOUND");
      assert.equal(error.message, "no such entity: é 100%");
      assert.deepEqual(error.metadata, { id: "e1" });
      assert.equal(error.headers["umw-cache-status"], "umw; hit; detail=negative");
      assert.equal(headersSeen, false, "a trailers-only answer has no response headers (the retry interceptor counts on it)");
    } finally {
      mesh.close();
    }
  });

  test("a failure after headers and in trailers is read from the trailers", async () => {
    behaviour = (stream) => answer(stream, Buffer.alloc(0), { trailers: { "grpc-status": String(Code.ABORTED), "grpc-message": "version%20moved" } });
    const mesh = client();
    try {
      const error = await rejection(mesh.unary(QueryService.method.getEntity, request));
      assert.equal(error.code, Code.ABORTED);
      assert.equal(error.message, "version moved");
    } finally {
      mesh.close();
    }
  });

  test("an HTTP status other than 200 becomes the gRPC code the spec gives it", async () => {
    const mesh = client();
    try {
      for (const [http, code] of [[503, Code.UNAVAILABLE], [404, Code.UNIMPLEMENTED], [401, Code.UNAUTHENTICATED], [403, Code.PERMISSION_DENIED], [400, Code.INTERNAL], [500, Code.UNKNOWN]] as const) {
        behaviour = (stream) => {
          stream.respond({ ":status": http, "content-type": "text/html" });
          stream.end("<html>proxy error</html>");
        };
        const error = await rejection(mesh.unary(QueryService.method.getEntity, request));
        assert.equal(error.code, code, `HTTP ${http}`);
        assert.equal(error.message, `Received HTTP status code ${http}`);
      }
    } finally {
      mesh.close();
    }
    assert.equal(httpStatusCode(429), Code.UNAVAILABLE);
    assert.equal(httpStatusCode(502), Code.UNAVAILABLE);
  });

  test("an OK status without a message is UNIMPLEMENTED; two messages or a cut message are not taken", async () => {
    const mesh = client();
    try {
      behaviour = (stream) => answer(stream, Buffer.alloc(0));
      assert.equal((await rejection(mesh.unary(QueryService.method.getEntity, request))).code, Code.UNIMPLEMENTED);
      behaviour = (stream) => answer(stream, Buffer.concat([entityResponse("a"), entityResponse("b")]));
      assert.equal((await rejection(mesh.unary(QueryService.method.getEntity, request))).code, Code.INTERNAL);
      behaviour = (stream) => answer(stream, entityResponse("a").subarray(0, 8));
      assert.equal((await rejection(mesh.unary(QueryService.method.getEntity, request))).code, Code.INTERNAL);
    } finally {
      mesh.close();
    }
  });

  test("a response of 1 MiB (many DATA frames, past the initial flow-control windows) arrives whole", async () => {
    const big = "x".repeat(1024 * 1024);
    behaviour = (stream) => answer(stream, entityResponse(big), { pieces: 40 });
    const mesh = client();
    try {
      const response = await mesh.unary(QueryService.method.getEntity, request, { timeoutMs: 10_000 });
      assert.equal(idOf(response.message)?.length, big.length);
    } finally {
      mesh.close();
    }
  });

  test("a response larger than the receive limit is RESOURCE_EXHAUSTED", async () => {
    behaviour = (stream) => answer(stream, entityResponse("x".repeat(2_000)));
    const mesh = client(new Http2UnaryTransport(address, { maxReceiveMessageBytes: 1_000 }));
    try {
      const error = await rejection(mesh.unary(QueryService.method.getEntity, request));
      assert.equal(error.code, Code.RESOURCE_EXHAUSTED);
    } finally {
      mesh.close();
    }
  });

  test("grpc-timeout: at most 8 digits, rounded up, larger units when needed", () => {
    assert.equal(grpcTimeout(0.2), "1m");
    assert.equal(grpcTimeout(15_000), "15000m");
    assert.equal(grpcTimeout(99_999_999), "99999999m");
    assert.equal(grpcTimeout(100_000_000), "100000S");
    assert.equal(grpcTimeout(3_600_000 * 1e6), "60000000M");
    assert.equal(grpcTimeout(60_000 * 1e8), "1666667H");
  });
});

describe("lean unary transport: time, cancellation, connections", () => {
  test("the deadline fails the call DEADLINE_EXCEEDED and resets the stream with CANCEL", async () => {
    behaviour = () => undefined; // never answers
    const mesh = client();
    try {
      const started = Date.now();
      const error = await rejection(mesh.unary(QueryService.method.getEntity, request, { timeoutMs: 150 }));
      assert.equal(error.code, Code.DEADLINE_EXCEEDED);
      assert.ok(Date.now() - started >= 140, "not before the deadline");
      const record = seen.at(-1)!;
      await waitUntil(() => record.rstCode !== undefined);
      assert.equal(record.rstCode, constants.NGHTTP2_CANCEL);
      // A deadline already past never reaches the network.
      const before = seen.length;
      assert.equal((await rejection(mesh.unary(QueryService.method.getEntity, request, { deadline: Date.now() - 1 }))).code, Code.DEADLINE_EXCEEDED);
      assert.equal(seen.length, before);
    } finally {
      mesh.close();
    }
  });

  test("the caller's abort fails the call CANCELLED and resets the stream", async () => {
    behaviour = () => undefined;
    const mesh = client();
    try {
      const abort = new AbortController();
      const call = mesh.unary(QueryService.method.getEntity, request, { signal: abort.signal });
      await waitUntil(() => seen.length > 0 && seen.at(-1)!.body.length > 0 && seen.at(-1)!.rstCode === undefined);
      const record = seen.at(-1)!;
      abort.abort();
      assert.equal((await rejection(call)).code, Code.CANCELLED);
      await waitUntil(() => record.rstCode !== undefined);
      assert.equal(record.rstCode, constants.NGHTTP2_CANCEL);
    } finally {
      mesh.close();
    }
  });

  test("one session for many calls; after GOAWAY the calls go on a new one, and none racing the GOAWAY fails", async () => {
    behaviour = (stream) => answer(stream, entityResponse("ok"));
    const mesh = client();
    try {
      const first = sessionCount;
      await Promise.all(Array.from({ length: 20 }, () => mesh.unary(QueryService.method.getEntity, request)));
      assert.equal(sessionCount, first + 1, "one session for 20 concurrent calls");
      for (const session of sessions) if (!session.closed && !session.destroyed) session.goaway(constants.NGHTTP2_NO_ERROR);
      // Calls racing the GOAWAY are refused by the server unprocessed and sent again on a new
      // session: none fails.
      const responses = await Promise.all(Array.from({ length: 20 }, () => mesh.unary(QueryService.method.getEntity, request)));
      for (const response of responses) assert.equal(idOf(response.message), "ok");
      assert.equal(sessionCount, first + 2);
    } finally {
      mesh.close();
    }
  });

  test("a server that dies mid-call fails it UNAVAILABLE; the next call reconnects", async () => {
    behaviour = (stream) => stream.session?.destroy();
    const mesh = client();
    try {
      const error = await rejection(mesh.unary(QueryService.method.getEntity, request));
      assert.equal(error.code, Code.UNAVAILABLE, error.message);
      behaviour = (stream) => answer(stream, entityResponse("back"));
      const response = await mesh.unary(QueryService.method.getEntity, request);
      assert.equal(idOf(response.message), "back");
    } finally {
      mesh.close();
    }
  });

  test("with a keepalive interval the session pings the server while it is open", async () => {
    behaviour = (stream) => answer(stream, entityResponse("ok"));
    let pings = 0;
    const counting = (session: ServerHttp2Session) => session.on("ping", () => pings++);
    server.on("session", counting);
    const mesh = client(new Http2UnaryTransport(address, { keepaliveTimeMs: 30, keepaliveTimeoutMs: 1_000 }));
    try {
      await mesh.unary(QueryService.method.getEntity, request);
      await waitUntil(() => pings >= 2);
      // Answered pings keep the session: the next call needs no new one.
      const opened = sessionCount;
      await mesh.unary(QueryService.method.getEntity, request);
      assert.equal(sessionCount, opened);
    } finally {
      server.off("session", counting);
      mesh.close();
    }
  });

  test("nothing listening: UNAVAILABLE", async () => {
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
    const deadAddress = `127.0.0.1:${(probe.address() as AddressInfo).port}`;
    await new Promise((resolve) => probe.close(resolve));
    const mesh = new ServiceClient(QueryService, deadAddress, credentials.createInsecure(), {
      unaryTransport: new Http2UnaryTransport(deadAddress),
      metrics: prometheusCallMetrics("client", new Registry()),
    });
    try {
      const error = await rejection(mesh.unary(QueryService.method.getEntity, request, { timeoutMs: 2_000 }));
      assert.equal(error.code, Code.UNAVAILABLE);
      assert.match(error.message, /ECONNREFUSED|Connection/);
    } finally {
      mesh.close();
    }
  });
});

async function waitUntil(condition: () => boolean, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
