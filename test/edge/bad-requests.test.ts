// What the edge answers to requests it cannot use: bodies that do not decompress or parse, caller
// deadlines too long or already short, oversized URLs and headers. Driven by curl and the
// connect-web / connect-node transports (clients not written here).
//
//   node --import tsx --test test/edge/bad-requests.test.ts
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { create, toBinary } from "@bufbuild/protobuf";
import { GetEntityRequestSchema, QueryService } from "../../gen/umw/v1/query_pb.js";
import type { RunningEdge } from "../../services/edge/index.js";
import { startFixture, type Fixture } from "./fixtures.js";

const run = promisify(execFile);
let fx: Fixture;
let h2cEdge: RunningEdge;
before(async () => {
  fx = await startFixture();
  h2cEdge = await fx.startEdge({ h2cPort: 0, maxTimeoutMs: 60_000 });
});
after(async () => {
  await fx?.close();
});

/** curl, with the body from stdin (binary-safe); answers status, headers text and body. */
async function curl(args: string[], body?: Buffer): Promise<{ status: number; body: string }> {
  const child = run("curl", ["-s", "-S", "-o", "-", "-w", "\n%{http_code}", ...(body ? ["--data-binary", "@-"] : []), ...args], { encoding: "buffer", maxBuffer: 1 << 20 });
  if (body) child.child.stdin!.end(body);
  const { stdout } = await child;
  const text = stdout.toString("latin1");
  const cut = text.lastIndexOf("\n");
  return { status: Number(text.slice(cut + 1)), body: text.slice(0, cut) };
}

const GET_ENTITY = () => `${fx.url}/umw.v1.QueryService/GetEntity`;

/** A Connect error body: code, and an ErrorInfo detail with `reason`. */
function assertConnectError(body: string, code: string, reason: string): void {
  const json = JSON.parse(body) as { code: string; details?: { type: string; value: string }[] };
  assert.equal(json.code, code, body);
  const detail = json.details?.find((d) => d.type === "google.rpc.ErrorInfo");
  assert.ok(detail, `no ErrorInfo in ${body}`);
  assert.ok(Buffer.from(detail.value, "base64").toString("latin1").includes(reason), `reason ${reason} in ${body}`);
}

describe("Connect bodies the edge cannot use", () => {
  const json = Buffer.from('{"tenant":"t1","type":"book","id":"b1"}');
  for (const encoding of ["gzip", "br"]) {
    test(`content-encoding ${encoding} on a body that is not compressed: 400 INVALID_ARGUMENT`, async () => {
      for (const body of [json, Buffer.from("x"), Buffer.alloc(0)]) {
        const reply = await curl(["-H", "content-type: application/json", "-H", `content-encoding: ${encoding}`, GET_ENTITY()], body.length ? body : Buffer.from(" "));
        assert.equal(reply.status, 400, reply.body);
        assertConnectError(reply.body, "invalid_argument", "INVALID_ENCODING");
      }
    });
  }

  test("content-encoding zstd stays Connect's unimplemented (501), with a reason", async () => {
    const reply = await curl(["-H", "content-type: application/json", "-H", "content-encoding: zstd", GET_ENTITY()], json);
    assert.equal(reply.status, 501, reply.body);
    assertConnectError(reply.body, "unimplemented", "UNSUPPORTED_ENCODING");
  });

  test("application/proto with garbage (bad tag, truncated): 400 INVALID_ARGUMENT, not 500", async () => {
    for (const body of [Buffer.from([0xff, 0xff, 0xff, 0x0a]), Buffer.from([0x0a, 0x20, 0x61, 0x62])]) {
      const reply = await curl(["-H", "content-type: application/proto", GET_ENTITY()], body);
      assert.equal(reply.status, 400, reply.body);
      assertConnectError(reply.body, "invalid_argument", "INVALID_MESSAGE");
    }
  });

  test("malformed JSON at any depth: 400 INVALID_ARGUMENT", async () => {
    for (const text of ['{"tenant":', '{"tenant":"t1","minVersion":{"a":[1,{"b":', "[".repeat(100_000), '{"tenant":"t1"}}']) {
      const reply = await curl(["-H", "content-type: application/json", GET_ENTITY()], Buffer.from(text));
      assert.equal(reply.status, 400, reply.body.slice(0, 300));
      assertConnectError(reply.body, "invalid_argument", "INVALID");
    }
  });

  test("gRPC-web with a garbage message: INVALID_ARGUMENT in the trailer, with an ErrorInfo", async () => {
    // A well-formed client cannot send garbage: curl sends the raw frame, and the trailer frame is read back.
    const frame = Buffer.from([0, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0x0a]);
    const reply = await curl(["-H", "content-type: application/grpc-web+proto", "-H", "x-grpc-web: 1", GET_ENTITY()], frame);
    assert.equal(reply.status, 200);
    assert.match(reply.body, /grpc-status: ?3\r\n/, JSON.stringify(reply.body));
    assert.match(reply.body, /grpc-status-details-bin: ?\S+/);
  });

  test("an unsupported content type and a wrong method get a Status body too", async () => {
    const html = await curl(["-H", "content-type: text/html", GET_ENTITY()], json);
    assert.equal(html.status, 415);
    assertConnectError(html.body, "invalid_argument", "UNSUPPORTED_MEDIA_TYPE");
    const put = await curl(["-X", "PUT", "-H", "content-type: application/json", GET_ENTITY()], json);
    assert.equal(put.status, 405);
    assertConnectError(put.body, "unimplemented", "METHOD_NOT_ALLOWED");
  });
});

describe("caller deadlines", () => {
  const request = { tenant: "t1", type: "book", id: "b1" };
  const slow = { tenant: "t1", type: "book", id: "slow" };

  test("Connect-Timeout-Ms of 2^31 ms or more is clamped, not an instant cancel", async () => {
    for (const timeout of ["2147483648", "3000000000", "9999999999"]) {
      const reply = await curl(["-H", "content-type: application/json", "-H", `connect-timeout-ms: ${timeout}`, GET_ENTITY()], Buffer.from(JSON.stringify(request)));
      assert.equal(reply.status, 200, `${timeout}: ${reply.body}`);
      assert.equal(JSON.parse(reply.body).entity.id, "b1");
    }
  });

  test("grpc-timeout of hours over gRPC (h2c) and gRPC-web is clamped too", async () => {
    // connect's own clients overflow the same timer locally, so curl sends the header as it is.
    const message = Buffer.from(toBinary(GetEntityRequestSchema, create(GetEntityRequestSchema, request)));
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, message.length]), message]);
    for (const timeout of ["1000H", "99999999H", "99999999S"]) {
      const web = await curl(["-H", "content-type: application/grpc-web+proto", "-H", `grpc-timeout: ${timeout}`, GET_ENTITY()], frame);
      assert.equal(web.status, 200);
      assert.match(web.body, /grpc-status: ?0\r\n/, `gRPC-web ${timeout}: ${JSON.stringify(web.body.slice(-200))}`);
      const grpc = await curl(
        ["--http2-prior-knowledge", "-D", "-", "-H", "content-type: application/grpc", "-H", "te: trailers", "-H", `grpc-timeout: ${timeout}`, `http://127.0.0.1:${h2cEdge.h2cPort}/umw.v1.QueryService/GetEntity`],
        frame,
      );
      assert.equal(grpc.status, 200);
      assert.match(grpc.body, /grpc-status: ?0\r\n/, `gRPC ${timeout}: ${JSON.stringify(grpc.body.slice(-200))}`);
    }
  });

  test("an expired deadline is DEADLINE_EXCEEDED on Connect, gRPC-web and gRPC", async () => {
    const clients = {
      connect: createClient(QueryService, createConnectTransport({ baseUrl: fx.url })),
      "grpc-web": createClient(QueryService, createGrpcWebTransport({ baseUrl: fx.url })),
      grpc: createClient(QueryService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${h2cEdge.h2cPort}` })),
    };
    for (const [name, client] of Object.entries(clients)) {
      for (const timeoutMs of [1, 150]) {
        const error = await client.getEntity(slow, { timeoutMs }).then(
          () => assert.fail(`${name}: answered despite a ${timeoutMs} ms deadline`),
          (e: unknown) => e,
        );
        assert.ok(error instanceof ConnectError, String(error));
        assert.equal(error.code, Code.DeadlineExceeded, `${name} ${timeoutMs} ms: ${error.message}`);
      }
    }
    // And on curl's Connect, where the client does not shortcut its own deadline: the edge answers.
    const reply = await curl(["-H", "content-type: application/json", "-H", "connect-timeout-ms: 1", GET_ENTITY()], Buffer.from(JSON.stringify(slow)));
    assert.equal(reply.status, 504, reply.body);
    assertConnectError(reply.body, "deadline_exceeded", "DEADLINE_EXCEEDED");
  });

  test("REST: the edge's own deadline answers 504", async () => {
    const edge = await fx.startEdge({ timeoutMs: 100 });
    const reply = await curl([`${edge.url}/v1/tenants/t1/types/book/entities/slow`]);
    assert.equal(reply.status, 504, reply.body);
    assert.equal(JSON.parse(reply.body).code, 4);
  });
});

describe("oversized requests", () => {
  test("a URL over the limit: 414 with a Status body (HTTP/1.1)", async () => {
    for (const length of [9_000, 20_000]) {
      const reply = await curl([`${fx.url}/v1/tenants/t1/types/book/entities/${"a".repeat(length)}`]);
      assert.equal(reply.status, 414, `${length}: ${reply.body}`);
      assert.equal(JSON.parse(reply.body).details[0].reason, "URI_TOO_LONG");
    }
  });

  test("headers over Node's limit: 431 with a Status body", async () => {
    const reply = await curl(["-H", `x-big: ${"a".repeat(20_000)}`, `${fx.url}/healthz`]);
    assert.equal(reply.status, 431, reply.body);
    assert.equal(JSON.parse(reply.body).details[0].reason, "HEADERS_TOO_LARGE");
  });
});
