// The edge is generic over any service descriptor: HttpRule shapes beyond the umw protos, through a
// runtime-built test service (test/edge/library-service.ts) on a real mTLS grpc-js server.
//
//   node --import tsx --test test/edge/*.test.ts
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { DescService } from "@bufbuild/protobuf";
import { MeshServer } from "../../runtime/server.js";
import type { ServiceHandlers } from "../../runtime/service-definition.js";
import { clientCredentials, serverCredentials } from "../../runtime/tls.js";
import { startEdge, type RunningEdge } from "../../services/edge/index.js";
import { testCerts, type TestCerts } from "../support/certs.js";
import { log } from "./fixtures.js";
import { Library } from "./library-service.js";
import { testUpstreamClient } from "../support/edge-upstream-client.js";

type Any = Record<string, unknown>;
const seen: { method: string; request: Any }[] = [];
const last = () => seen[seen.length - 1]!.request;

let certs: TestCerts;
let server: MeshServer;
let edge: RunningEdge;

before(async () => {
  certs = testCerts(["library", "edge"]);
  server = new MeshServer({ name: "library", host: "127.0.0.1", port: 0, credentials: serverCredentials(certs.identity("library")), log, drainTimeoutMs: 200 });
  const handlers = {
    async getBook(request: Any) {
      seen.push({ method: "GetBook", request });
      return { book: { name: request.name, title: "T", version: 5n, kind: 2 }, note: "not in the body" };
    },
    async createBook(request: Any) {
      seen.push({ method: "CreateBook", request });
      return { ...(request.book as Any), name: `${request.parent}/books/new`, version: 1n };
    },
    async updateBook(request: Any) {
      seen.push({ method: "UpdateBook", request });
      return { ...(request.book as Any), version: 2n };
    },
    async archiveBook(request: Any) {
      seen.push({ method: "ArchiveBook", request });
      return { note: `archived ${request.name}` };
    },
    async getFile(request: Any) {
      seen.push({ method: "GetFile", request });
      return { path: request.path };
    },
  };
  server.addService(Library, handlers as unknown as ServiceHandlers<DescService>);
  const port = await server.start();
  edge = await startEdge({
    // These tests are about transcoding, not authentication (test/edge/auth.test.ts is): explicitly none.
    auth: { mode: "none" },
    port: 0,
    upstreams: [{ service: Library, address: `127.0.0.1:${port}` }],
    credentials: clientCredentials(certs.identity("edge")),
    upstreamClient: testUpstreamClient(),
    versionedTypes: ["edgetest.v1.Book"],
    log,
  });
});

after(async () => {
  await edge?.stop();
  await server?.stop();
  certs?.remove();
});

test("multi-segment variable, every query parameter kind, response_body, ETag from a nested versioned message", async () => {
  const query = [
    "kind=POEM",
    "ratings=1",
    "ratings=2",
    "ratings=-3",
    "published=true",
    "price=9.5",
    "since=2024-01-02T03:04:05Z",
    "filter.author=Ann%20Lee",
    "filter.year=1999",
    "data=aGk",
    "note=ignored-unknown",
  ].join("&");
  const response = await fetch(`${edge.url}/v1/shelves/s1/books/b1?${query}`);
  assert.equal(response.status, 200);
  assert.deepEqual(await response.json(), { name: "shelves/s1/books/b1", title: "T", version: "5", kind: "POEM" }, "response_body: only the book");
  assert.equal(response.headers.get("etag"), 'W/"5"');
  const request = last();
  assert.equal(request.name, "shelves/s1/books/b1");
  assert.equal(request.kind, 2);
  assert.deepEqual(request.ratings, [1, 2, -3]);
  assert.equal(request.published, true);
  assert.equal(request.price, 9.5);
  assert.equal((request.since as { seconds: bigint }).seconds, 1704164645n);
  assert.deepEqual({ ...(request.filter as Any), $typeName: undefined }, { $typeName: undefined, author: "Ann Lee", year: 1999 });
  assert.deepEqual([...(request.data as Uint8Array)], [0x68, 0x69]);
});

test("enums by number, booleans as Go's ParseBool", async () => {
  const response = await fetch(`${edge.url}/v1/shelves/s1/books/b1?kind=1&published=F`);
  assert.equal(response.status, 200);
  assert.equal(last().kind, 1);
  assert.equal(last().published, false);
  await response.body?.cancel();
});

test("bad values of each kind are a 400 naming the parameter", async () => {
  for (const [query, parameter] of [
    ["kind=EPIC", "kind"],
    ["published=yes", "published"],
    ["price=cheap", "price"],
    ["ratings=1&ratings=x", "ratings"],
    ["ratings=3000000000", "ratings"],
    ["since=yesterday", "since"],
    ["filter.year=-1", "filter.year"],
    ["data=not*base64", "data"],
  ]) {
    const response = await fetch(`${edge.url}/v1/shelves/s1/books/b1?${query}`);
    assert.equal(response.status, 400, query);
    const status = (await response.json()) as { details: { reason: string; metadata: { parameter: string } }[] };
    assert.equal(status.details[0]!.reason, "INVALID_QUERY_PARAMETER", query);
    assert.equal(status.details[0]!.metadata.parameter, parameter, query);
  }
});

test("additional_bindings route to the same method", async () => {
  const response = await fetch(`${edge.url}/v1/books/b2`);
  assert.equal(response.status, 200);
  assert.equal(last().name, "b2");
  await response.body?.cancel();
  // A single-segment variable does not take a multi-segment value.
  assert.equal((await fetch(`${edge.url}/v1/books/b2/more`)).status, 404);
});

test('body "*" binds the whole request; the path variable wins over the body', async () => {
  const response = await fetch(`${edge.url}/v1/shelves/s9/books`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ parent: "shelves/evil", book: { title: "Dune", kind: "NOVEL" } }),
  });
  assert.equal(response.status, 200);
  assert.deepEqual(await response.json(), { name: "shelves/s9/books/new", title: "Dune", version: "1", kind: "NOVEL" });
  assert.equal(last().parent, "shelves/s9");
});

test('body "*" rejects unknown fields and non-objects as INVALID_JSON', async () => {
  for (const body of ['{"nope":1}', "[]", '{"book":{"kind":"EPIC"}}']) {
    const response = await fetch(`${edge.url}/v1/shelves/s9/books`, { method: "POST", headers: { "content-type": "application/json" }, body });
    assert.equal(response.status, 400, body);
    const status = (await response.json()) as { details: { reason: string }[] };
    assert.equal(status.details[0]!.reason, "INVALID_JSON", body);
  }
});

test("a nested path variable fills a field inside the body field", async () => {
  const response = await fetch(`${edge.url}/v1/shelves/s1/books/b7?force=true`, {
    method: "PATCH",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ title: "New title" }),
  });
  assert.equal(response.status, 200);
  const request = last();
  assert.equal((request.book as Any).name, "shelves/s1/books/b7");
  assert.equal((request.book as Any).title, "New title");
  assert.equal(request.force, true);
  assert.deepEqual(await response.json(), { name: "shelves/s1/books/b7", title: "New title", version: "2" });
});

test("a custom verb with a custom HTTP method", async () => {
  const response = await fetch(`${edge.url}/v1/shelves/s1/books/b1:archive`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
  assert.equal(response.status, 200);
  assert.deepEqual(await response.json(), { note: "archived shelves/s1/books/b1" });
  // GET on the same path is the plain GetBook of a book named "b1:archive".
  const get = await fetch(`${edge.url}/v1/shelves/s1/books/b1:archive`);
  assert.equal(get.status, 200);
  assert.equal(last().name, "shelves/s1/books/b1:archive");
  await get.body?.cancel();
});

test("** captures the rest of the path, keeping %2F encoded", async () => {
  let response = await fetch(`${edge.url}/v1/files/a/b/c.txt`);
  assert.deepEqual(await response.json(), { path: "a/b/c.txt" });
  response = await fetch(`${edge.url}/v1/files/dir%2Fname/x%20y`);
  assert.deepEqual(await response.json(), { path: "dir%2Fname/x y" });
  response = await fetch(`${edge.url}/v1/files/one`);
  assert.deepEqual(await response.json(), { path: "one" });
});
