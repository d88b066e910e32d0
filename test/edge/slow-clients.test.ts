// Clients that open a connection and then send too little, too slowly: each connection is closed
// within its bound (small bounds here), on raw sockets (node:net) so nothing finishes the request
// for the client.
//
//   node --import tsx --test test/edge/slow-clients.test.ts
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import type { RunningEdge } from "../../services/edge/index.js";
import { startFixture, type Fixture } from "./fixtures.js";

const HEADERS_MS = 300;
const REQUEST_MS = 500;
const IDLE_MS = 300;
const SESSION_MS = 900;
/** SESSION_MS is above REQUEST_MS: a silent h2 stream is first answered 408, before its session is closed as idle. */
/** Slack for Node's periodic check of the HTTP/1.1 bounds (a quarter of the smaller one) and a busy machine. */
const SLACK_MS = 1_500;

let fx: Fixture;
let edge: RunningEdge;
before(async () => {
  fx = await startFixture();
  edge = await fx.startEdge({ h2cPort: 0, headersTimeoutMs: HEADERS_MS, requestTimeoutMs: REQUEST_MS, idleTimeoutMs: IDLE_MS, sessionTimeoutMs: SESSION_MS });
});
after(async () => {
  await fx?.close();
});

/** Opens a socket, writes `data`, and resolves when the server closes it: what it sent and after how long. */
async function heldFor(port: number, data: Buffer | string, within: number): Promise<{ ms: number; received: string }> {
  const socket: Socket = connect(port, "127.0.0.1");
  await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
  const started = Date.now();
  let received = "";
  socket.on("data", (chunk: Buffer) => (received += chunk.toString("latin1")));
  socket.on("error", () => undefined);
  socket.write(data);
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<"open">((resolve) => (timer = setTimeout(() => resolve("open"), within)));
  const outcome = await Promise.race([closed.then(() => "closed" as const), limit]);
  clearTimeout(timer);
  socket.destroy();
  assert.equal(outcome, "closed", `the connection was still open after ${within} ms`);
  return { ms: Date.now() - started, received };
}

test("HTTP/1.1 partial headers: closed with 408 within the headers bound", async () => {
  const { ms, received } = await heldFor(edge.port, "GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: 1", HEADERS_MS + SLACK_MS);
  assert.ok(ms >= HEADERS_MS - 50, `closed after ${ms} ms, before the bound`);
  assert.match(received, /^HTTP\/1\.1 408 /);
  assert.match(received, /"REQUEST_TIMEOUT"/);
});

test("HTTP/1.1 partial body: closed with 408 within the request bound", async () => {
  const head = `POST /v1/tenants/t1/types/book/entities HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\nidempotency-key: "k"\r\n\r\n{"data":`;
  const { ms, received } = await heldFor(edge.port, head, REQUEST_MS + SLACK_MS);
  assert.ok(ms >= REQUEST_MS - 50, `closed after ${ms} ms, before the bound`);
  assert.match(received, /^HTTP\/1\.1 408 /);
});

test("HTTP/1.1 kept-alive connection idle after an answer: closed within the idle bound", async () => {
  const { ms, received } = await heldFor(edge.port, "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n", IDLE_MS + SLACK_MS);
  assert.match(received, /^HTTP\/1\.1 200 /);
  assert.ok(ms >= IDLE_MS - 50, `closed after ${ms} ms`);
});

test("h2c connection that sends only the preface: closed within the session bound", async () => {
  const { ms } = await heldFor(edge.h2cPort!, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", SESSION_MS + SLACK_MS);
  assert.ok(ms >= SESSION_MS - 50, `closed after ${ms} ms`);
});

test("h2c request whose body never ends: answered 408 within the request bound", async () => {
  const { connect: h2connect } = await import("node:http2");
  const session = h2connect(`http://127.0.0.1:${edge.h2cPort}`);
  session.on("error", () => undefined);
  const started = Date.now();
  const stream = session.request({ ":method": "POST", ":path": "/v1/tenants/t1/types/book/entities", "content-type": "application/json", "idempotency-key": '"k"' });
  stream.write('{"data":');
  const status = await new Promise<number>((resolve, reject) => {
    stream.once("response", (headers) => resolve(Number(headers[":status"])));
    stream.once("error", reject);
    setTimeout(() => reject(new Error("no answer within the bound")), REQUEST_MS + SLACK_MS).unref();
  });
  const ms = Date.now() - started;
  session.destroy();
  assert.equal(status, 408);
  assert.ok(ms >= REQUEST_MS - 50, `answered after ${ms} ms`);
});

test("a well-behaved client is not cut: a request sent whole is answered", async () => {
  const response = await fetch(`${edge.url}/v1/tenants/t1/types/book/entities/b1`);
  assert.equal(response.status, 200);
});
