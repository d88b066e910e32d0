// REST transcoding through the edge, over real HTTP (fetch) to fake upstreams on real mTLS gRPC.
//
//   node --import tsx --test test/edge/*.test.ts
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { request as httpRequest } from "node:http";
import { CommandService } from "../../gen/umw/v1/command_pb.js";
import { QueryService } from "../../gen/umw/v1/query_pb.js";
import { startFixture, type Fixture } from "./fixtures.js";

let fx: Fixture;
before(async () => {
  fx = await startFixture();
});
after(async () => {
  await fx?.close();
});

const entityPath = (id: string, tenant = "t1", type = "book") => `/v1/tenants/${tenant}/types/${type}/entities/${id}`;

interface StatusBody {
  code: number;
  message: string;
  details: { "@type": string; reason: string; domain: string; metadata?: Record<string, string> }[];
}

async function statusOf(response: Response): Promise<StatusBody> {
  assert.match(response.headers.get("content-type") ?? "", /application\/json/);
  const body = (await response.json()) as StatusBody;
  assert.equal(typeof body.code, "number");
  assert.equal(body.details[0]?.["@type"], "type.googleapis.com/google.rpc.ErrorInfo");
  return body;
}

describe("path and query binding", () => {
  test("GET binds path variables and answers proto3 JSON with ETag, Cache-Status, request id", async () => {
    const response = await fetch(fx.url + entityPath("e1"));
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), {
      entity: { tenant: "t1", type: "book", id: "e1", version: "7", data: { name: "e1", n: 1 } },
    });
    assert.equal(response.headers.get("etag"), 'W/"7"');
    assert.equal(response.headers.get("cache-status"), "umw; hit; ttl=376");
    assert.equal(response.headers.get("cache-control"), "private, max-age=0, must-revalidate");
    const requestId = response.headers.get("x-request-id");
    assert.match(requestId ?? "", /^[0-9a-f-]{36}$/);
    const call = fx.last("GetEntity");
    assert.deepEqual([call.request.tenant, call.request.type, call.request.id], ["t1", "book", "e1"]);
    assert.equal(call.headers["x-request-id"], requestId);
  });

  test("percent-encoded path segments are decoded", async () => {
    const response = await fetch(fx.url + entityPath("a%20b", "t%2D1"));
    assert.equal(response.status, 200);
    assert.equal(fx.last("GetEntity").request.id, "a b");
    assert.equal(fx.last("GetEntity").request.tenant, "t-1");
  });

  test("a malformed escape in the path is a 400", async () => {
    const response = await fetch(fx.url + entityPath("%E0%A4%A"));
    assert.equal(response.status, 400);
    assert.equal((await statusOf(response)).details[0]!.reason, "INVALID_PATH");
  });

  test("unbound fields come from query parameters, by proto or JSON name; int64 as decimal", async () => {
    let response = await fetch(fx.url + entityPath("e1") + "?min_version=9");
    assert.equal(response.status, 200);
    assert.equal(fx.last("GetEntity").request.minVersion, 9n);
    assert.equal(response.headers.get("etag"), 'W/"9"');
    response = await fetch(fx.url + entityPath("e1") + "?minVersion=11&unknown=ignored");
    assert.equal(response.status, 200);
    assert.equal(fx.last("GetEntity").request.minVersion, 11n);
  });

  test("a query parameter naming a path-bound field is ignored", async () => {
    const response = await fetch(fx.url + entityPath("e1") + "?id=other&tenant=x");
    assert.equal(response.status, 200);
    assert.equal(fx.last("GetEntity").request.id, "e1");
    assert.equal(fx.last("GetEntity").request.tenant, "t1");
  });

  test("a query parameter of the wrong type is a 400 naming the parameter", async () => {
    for (const [query, parameter] of [
      ["min_version=abc", "min_version"],
      ["min_version=1.5", "min_version"],
      ["minVersion=99999999999999999999", "minVersion"],
    ] as const) {
      const response = await fetch(fx.url + entityPath("e1") + "?" + query);
      assert.equal(response.status, 400, query);
      const status = await statusOf(response);
      assert.equal(status.code, 3);
      assert.equal(status.details[0]!.reason, "INVALID_QUERY_PARAMETER");
      assert.equal(status.details[0]!.metadata?.parameter, parameter);
      assert.match(status.message, new RegExp(parameter));
    }
    const response = await fetch(fx.url + "/v1/tenants/t1/types/book/entities?page_size=x");
    assert.equal(response.status, 400);
    assert.equal((await statusOf(response)).details[0]!.metadata?.parameter, "page_size");
  });

  test("repeated fields take repeated parameters (no comma splitting, as grpc-gateway)", async () => {
    let response = await fetch(fx.url + "/v1/tenants/t1/types/book/entities:batchGet?ids=a&ids=b&ids=missing&ids=c");
    assert.equal(response.status, 200);
    assert.deepEqual(fx.last("BatchGetEntities").request.ids, ["a", "b", "missing", "c"]);
    const body = (await response.json()) as { entities: { id: string }[]; missingIds: string[] };
    assert.deepEqual(body.entities.map((entity) => entity.id), ["a", "b", "c"]);
    assert.deepEqual(body.missingIds, ["missing"]);
    assert.equal(response.headers.get("etag"), null, "a batch carries no single version");
    response = await fetch(fx.url + "/v1/tenants/t1/types/book/entities:batchGet?ids=a,b");
    assert.equal(response.status, 200);
    assert.deepEqual(fx.last("BatchGetEntities").request.ids, ["a,b"]);
  });

  test("a singular field given twice is a 400", async () => {
    const response = await fetch(fx.url + "/v1/tenants/t1/types/book/entities?page_size=1&page_size=2");
    assert.equal(response.status, 400);
    assert.equal((await statusOf(response)).details[0]!.reason, "INVALID_QUERY_PARAMETER");
  });

  test("list binds int32 and string parameters; the custom verb is not an id", async () => {
    const response = await fetch(fx.url + "/v1/tenants/t1/types/book/entities?page_size=25&pageToken=abc%2Bdef");
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { nextPageToken: "after-25-abc+def" });
    assert.equal(fx.last("ListEntities").request.pageSize, 25);
  });
});

describe("bodies and writes", () => {
  test("POST binds the body to the named field, forwards idempotency headers, answers 202", async () => {
    const response = await fetch(fx.url + "/v1/tenants/t1/types/book/entities", {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "idempotency-key": '"k-123"',
        authorization: "Bearer abc",
        traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "x-request-id": "req-42",
        "x-not-forwarded": "no",
        "x-umw-principal": "root",
      },
      body: JSON.stringify({ title: "Dune", pages: 412, tags: ["sf"], nested: { a: null } }),
    });
    assert.equal(response.status, 202);
    assert.equal(response.headers.get("x-request-id"), "req-42");
    assert.equal(response.headers.get("location"), "/v1/tenants/t1/commands/c-create");
    assert.equal(response.headers.get("cache-control"), "no-store");
    assert.equal(response.headers.get("x-http-status"), null, "x-http-status is consumed by the edge");
    assert.deepEqual(await response.json(), {
      receipt: { commandId: "c-create", state: "COMMAND_STATE_ACCEPTED", statusUrl: "/v1/tenants/t1/commands/c-create", entityId: "generated" },
    });
    const call = fx.last("CreateEntity");
    assert.deepEqual([call.request.tenant, call.request.type], ["t1", "book"]);
    assert.deepEqual(call.request.data, { title: "Dune", pages: 412, tags: ["sf"], nested: { a: null } });
    assert.equal(call.headers["idempotency-key"], '"k-123"');
    // The token stays at the edge (here with auth none, so there is no principal either); a client's x-umw-* never passes.
    assert.equal(call.headers.authorization, undefined);
    assert.equal(call.headers["x-umw-principal"], undefined);
    assert.equal(call.headers.traceparent, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    assert.equal(call.headers["x-request-id"], "req-42");
    assert.equal(call.headers["x-not-forwarded"], undefined);
  });

  test("PUT and PATCH bind body, path and query (int64, FieldMask); If-Match is forwarded", async () => {
    let response = await fetch(fx.url + entityPath("e5") + "?expected_version=3", {
      method: "PUT",
      headers: { "content-type": "application/json", "if-match": 'W/"3"' },
      body: JSON.stringify({ title: "New" }),
    });
    assert.equal(response.status, 202);
    let call = fx.last("UpdateEntity");
    assert.deepEqual([call.request.id, call.request.expectedVersion, call.request.data], ["e5", 3n, { title: "New" }]);
    assert.equal(call.headers["if-match"], 'W/"3"');
    response = await fetch(fx.url + entityPath("e6") + "?update_mask=title,author.name&expectedVersion=4", {
      method: "PATCH",
      headers: { "content-type": "application/json; charset=utf-8" },
      body: JSON.stringify({ title: "T", author: { name: "N" } }),
    });
    assert.equal(response.status, 202);
    call = fx.last("PatchEntity");
    assert.deepEqual((call.request.updateMask as { paths: string[] }).paths, ["title", "author.name"]);
    assert.equal(call.request.expectedVersion, 4n);
  });

  test("DELETE binds path and query; no body needed", async () => {
    const response = await fetch(fx.url + entityPath("e7") + "?expected_version=8", { method: "DELETE" });
    assert.equal(response.status, 202);
    const call = fx.last("DeleteEntity");
    assert.deepEqual([call.request.id, call.request.expectedVersion], ["e7", 8n]);
  });

  test("an empty body leaves the body field unset", async () => {
    const response = await fetch(fx.url + "/v1/tenants/t1/types/book/entities", { method: "POST" });
    assert.equal(response.status, 202);
    assert.equal(fx.last("CreateEntity").request.data, undefined);
  });

  test("malformed JSON, or JSON that does not fit the field, is a 400 INVALID_JSON", async () => {
    for (const body of ["{not json", "[1,2]", '"text"']) {
      const response = await fetch(fx.url + "/v1/tenants/t1/types/book/entities", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
      });
      assert.equal(response.status, 400, body);
      const status = await statusOf(response);
      assert.equal(status.code, 3);
      assert.equal(status.details[0]!.reason, "INVALID_JSON", body);
    }
  });

  test("a body that is not JSON is a 415", async () => {
    const response = await fetch(fx.url + "/v1/tenants/t1/types/book/entities", {
      method: "POST",
      headers: { "content-type": "application/xml" },
      body: "<a/>",
    });
    assert.equal(response.status, 415);
    assert.equal((await statusOf(response)).details[0]!.reason, "UNSUPPORTED_MEDIA_TYPE");
  });

  test("text/plain, a form or no content-type at all is a 415 (what any web page can send without a preflight); JSON with a charset and +json pass", async () => {
    const path = "/v1/tenants/t1/types/book/entities";
    const before = fx.calls.length;
    for (const headers of [{ "content-type": "text/plain" }, { "content-type": "text/plain;charset=UTF-8" }, { "content-type": "application/x-www-form-urlencoded" }, {}] as Record<string, string>[]) {
      // fetch gives a string body text/plain unless told otherwise: send a Blob without a type for "none".
      const body = headers["content-type"] ? '{"book":{"title":"t"}}' : new Blob(['{"book":{"title":"t"}}']);
      const response = await fetch(fx.url + path, { method: "POST", headers: { "idempotency-key": '"k"', ...headers }, body });
      assert.equal(response.status, 415, JSON.stringify(headers));
      const status = await statusOf(response);
      assert.equal(status.details[0]!.reason, "UNSUPPORTED_MEDIA_TYPE");
      assert.equal(status.details[0]!.metadata?.accept, "application/json");
    }
    assert.equal(fx.calls.length, before, "nothing refused reached the upstream");
    for (const type of ["application/json; charset=utf-8", "application/merge-patch+json"]) {
      const response = await fetch(fx.url + path, { method: "POST", headers: { "content-type": type, "idempotency-key": '"k"' }, body: '{"book":{"title":"t"}}' });
      assert.ok(response.status < 300, `${type}: ${response.status}`);
      await response.body?.cancel();
    }
  });

  test("a body over the default 1 MiB is a 413, and the connection stays usable", async () => {
    const big = JSON.stringify({ blob: "x".repeat(1024 * 1024 + 10) });
    const response = await fetch(fx.url + "/v1/tenants/t1/types/book/entities", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: big,
    });
    assert.equal(response.status, 413);
    assert.equal((await statusOf(response)).details[0]!.reason, "BODY_TOO_LARGE");
    assert.equal((await fetch(fx.url + entityPath("after-413"))).status, 200);
  });

  test("a chunked body over a configured limit is a 413", async () => {
    const edge = await fx.startEdge({ maxBodyBytes: 1000 });
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(`${edge.url}/v1/tenants/t1/types/book/entities`, { method: "POST", headers: { "content-type": "application/json" } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", reject);
      req.write('{"blob":"');
      req.write("y".repeat(3000));
      req.end('"}');
    });
    assert.equal(status, 413);
    const ok = await fetch(`${edge.url}/v1/tenants/t1/types/book/entities`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ small: true }) });
    assert.equal(ok.status, 202);
    await edge.stop();
  });
});

describe("conditional reads", () => {
  test("If-None-Match with the current tag (weak comparison, lists, *) is a 304 with ETag and Cache-Control", async () => {
    for (const header of ['W/"7"', '"7"', '"1", W/"7"', 'W/"2",W/"7" ', "*"]) {
      const response = await fetch(fx.url + entityPath("e1"), { headers: { "if-none-match": header } });
      assert.equal(response.status, 304, header);
      assert.equal(response.headers.get("etag"), 'W/"7"');
      assert.equal(response.headers.get("cache-control"), "private, max-age=0, must-revalidate");
      assert.equal(response.headers.get("cache-status"), "umw; hit; ttl=376");
      assert.equal(await response.text(), "");
    }
  });

  test("If-None-Match with other tags gets the full answer", async () => {
    for (const header of ['W/"8"', '"77"', "7", 'W/"1", "2"']) {
      const response = await fetch(fx.url + entityPath("e1"), { headers: { "if-none-match": header } });
      assert.equal(response.status, 200, header);
      assert.equal(response.headers.get("etag"), 'W/"7"');
      await response.json();
    }
  });

  test("HEAD answers the headers of GET without a body", async () => {
    const response = await fetch(fx.url + entityPath("e1"), { method: "HEAD" });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("etag"), 'W/"7"');
    assert.equal(await response.text(), "");
  });

  test("Cache-Status is passed through from the upstream", async () => {
    const response = await fetch(fx.url + entityPath("cold"));
    assert.equal(response.headers.get("cache-status"), "umw; fwd=miss; stored");
    await response.body?.cancel();
  });
});

describe("errors", () => {
  const cases: [id: string, http: number, code: number, reason: string][] = [
    ["missing", 404, 5, "ENTITY_NOT_FOUND"],
    ["forbidden", 403, 7, "FORBIDDEN"],
    ["unauth", 401, 16, "TOKEN_EXPIRED"],
    ["limited", 429, 8, "RATE_LIMITED"],
    ["conflict", 409, 10, "VERSION_CONFLICT"],
    ["exists", 409, 6, "ENTITY_EXISTS"],
    ["precondition", 400, 9, "VERSION_MISMATCH"],
    ["invalid", 400, 3, "INVALID_ID"],
    ["busy", 503, 14, "BACKEND_DOWN"],
    ["boom", 500, 13, "INTERNAL"],
  ];
  for (const [id, http, code, reason] of cases) {
    test(`upstream ${reason} (code ${code}) is HTTP ${http} with google.rpc.Status JSON`, async () => {
      const response = await fetch(fx.url + entityPath(id), { headers: { "x-request-id": `r-${id}` } });
      assert.equal(response.status, http);
      assert.equal(response.headers.get("cache-control"), "no-store");
      assert.equal(response.headers.get("x-request-id"), `r-${id}`);
      const status = await statusOf(response);
      assert.equal(status.code, code);
      assert.equal(status.details[0]!.reason, reason);
      assert.equal(status.details[0]!.domain, "umw.dev");
    });
  }

  test("ErrorInfo metadata and upstream headers (Cache-Status, Retry-After) survive", async () => {
    let response = await fetch(fx.url + entityPath("missing"));
    const text = await response.text();
    assert.match(text, /^\{"code":5,"message":"no such entity","details":\[\{"@type":"type\.googleapis\.com\/google\.rpc\.ErrorInfo",/);
    assert.deepEqual(JSON.parse(text), {
      code: 5,
      message: "no such entity",
      details: [{ "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "ENTITY_NOT_FOUND", domain: "umw.dev", metadata: { type: "book", id: "missing" } }],
    });
    assert.equal(response.headers.get("cache-status"), "umw; hit; detail=negative");
    response = await fetch(fx.url + entityPath("limited"));
    assert.equal(response.status, 429);
    assert.equal(response.headers.get("retry-after"), "3");
    await response.body?.cancel();
  });

  test("FAILED_PRECONDITION of a conditional write is a 412", async () => {
    const response = await fetch(fx.url + entityPath("precondition"), {
      method: "PUT",
      headers: { "if-match": 'W/"2"', "content-type": "application/json" },
      body: "{}",
    });
    assert.equal(response.status, 412);
    assert.equal((await statusOf(response)).details[0]!.reason, "VERSION_MISMATCH");
  });

  test("an unknown route is a 404 ROUTE_NOT_FOUND", async () => {
    for (const path of ["/v1/nothing", "/", "/v1/tenants/t1/types/book", "/v1/tenants/t1/types/book/entities/e1/extra", "/umw.v1.QueryService/Nope"]) {
      const response = await fetch(fx.url + path);
      assert.equal(response.status, 404, path);
      const status = await statusOf(response);
      assert.equal(status.code, 5);
      assert.equal(status.details[0]!.reason, "ROUTE_NOT_FOUND");
    }
  });

  test("a known path with the wrong method is a 405 with Allow", async () => {
    const response = await fetch(fx.url + entityPath("e1"), { method: "POST", body: "{}" });
    assert.equal(response.status, 405);
    const allow = (response.headers.get("allow") ?? "").split(", ").sort();
    assert.deepEqual(allow, ["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "PUT"]);
    assert.equal((await statusOf(response)).details[0]!.reason, "METHOD_NOT_ALLOWED");
    const options = await fetch(fx.url + "/v1/tenants/t1/types/book/entities", { method: "OPTIONS" });
    assert.equal(options.status, 204);
    assert.deepEqual((options.headers.get("allow") ?? "").split(", ").sort(), ["GET", "HEAD", "OPTIONS", "POST"]);
  });

  test("an upstream that is down is a 503 UPSTREAM_UNAVAILABLE, fast; /readyz says so", async () => {
    const edge = await fx.startEdge({
      upstreams: [
        { service: QueryService, address: fx.deadAddress },
        { service: CommandService, address: fx.deadAddress },
      ],
    });
    const started = Date.now();
    const response = await fetch(`${edge.url}${entityPath("e1")}`);
    assert.equal(response.status, 503);
    const status = await statusOf(response);
    assert.equal(status.code, 14);
    assert.equal(status.details[0]!.reason, "UPSTREAM_UNAVAILABLE");
    assert.doesNotMatch(status.message, /127\.0\.0\.1/, "no internal address leaks");
    assert.ok(Date.now() - started < 5_000);
    const ready = await fetch(`${edge.url}/readyz`);
    assert.equal(ready.status, 503);
    const readyBody = (await ready.json()) as { status: string; upstreams: unknown; notReady: string[] };
    assert.equal(readyBody.status, "NOT_SERVING");
    assert.deepEqual(readyBody.upstreams, { "umw.v1.QueryService": "UNREACHABLE", "umw.v1.CommandService": "UNREACHABLE" });
    assert.deepEqual(
      readyBody.notReady.filter((name) => name.startsWith("upstream ")),
      ["upstream umw.v1.QueryService", "upstream umw.v1.CommandService"],
      "the body names what is not ready",
    );
    assert.equal((await fetch(`${edge.url}/healthz`)).status, 200);
    await edge.stop();
  });

  test("an upstream slower than the timeout is a 504 UPSTREAM_TIMEOUT", async () => {
    const edge = await fx.startEdge({ timeoutMs: 200 });
    const response = await fetch(`${edge.url}${entityPath("slow")}`);
    assert.equal(response.status, 504);
    assert.equal((await statusOf(response)).details[0]!.reason, "UPSTREAM_TIMEOUT");
    await edge.stop();
  });

  test("a client that goes away mid-call does not break the edge", async () => {
    const controller = new AbortController();
    const pending = fetch(fx.url + entityPath("slow"), { signal: controller.signal });
    setTimeout(() => controller.abort(), 100);
    await assert.rejects(pending);
    assert.equal((await fetch(fx.url + entityPath("e1"))).status, 200);
  });
});

describe("server streaming as NDJSON", () => {
  test("WatchCommand streams one JSON message a line", async () => {
    const response = await fetch(fx.url + "/v1/tenants/t1/commands/c9:watch", { headers: { "x-request-id": "watch-1" } });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-type"), "application/x-ndjson");
    assert.equal(response.headers.get("x-request-id"), "watch-1");
    assert.equal(response.headers.get("cache-status"), "umw; fwd=uri-miss");
    const lines = (await response.text()).split("\n");
    assert.equal(lines.pop(), "", "every line ends with a newline");
    const messages = lines.map((line) => JSON.parse(line) as { command: { commandId: string; state: string; version?: string } });
    assert.deepEqual(messages.map((message) => message.command.state), ["COMMAND_STATE_ACCEPTED", "COMMAND_STATE_ACCEPTED", "COMMAND_STATE_APPLIED"]);
    assert.deepEqual(messages.map((message) => message.command.version), [undefined, "1", "2"]);
    // An Any inside a message (google.rpc.Status details) needs the edge's type registry.
    assert.deepEqual((messages[2]!.command as unknown as { error: unknown }).error, {
      message: "note",
      details: [{ "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "APPLIED_WITH_NOTE", domain: "umw.dev", metadata: { note: "x" } }],
    });
    assert.equal(fx.last("WatchCommand").request.commandId, "c9");
    assert.equal(fx.last("WatchCommand").headers["x-request-id"], "watch-1");
  });

  test("messages are flushed as they come", async () => {
    const started = Date.now();
    const response = await fetch(fx.url + "/v1/tenants/t1/commands/slow:watch");
    const reader = response.body!.getReader();
    const first = await reader.read();
    const firstAt = Date.now() - started;
    assert.match(new TextDecoder().decode(first.value), /COMMAND_STATE_ACCEPTED/);
    let rest = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      rest += new TextDecoder().decode(value);
    }
    const total = Date.now() - started;
    // The upstream sends a message every 300 ms: the first line must not wait for the last.
    assert.ok(total - firstAt >= 400, `first line after ${firstAt} ms, end after ${total} ms`);
    assert.match(rest, /COMMAND_STATE_APPLIED/);
  });

  test("a failure before the first message is a plain HTTP error", async () => {
    const response = await fetch(fx.url + "/v1/tenants/t1/commands/missing:watch");
    assert.equal(response.status, 404);
    assert.equal((await statusOf(response)).details[0]!.reason, "COMMAND_NOT_FOUND");
  });

  test("a failure mid-stream ends the stream with an error line", async () => {
    const response = await fetch(fx.url + "/v1/tenants/t1/commands/fails:watch");
    assert.equal(response.status, 200);
    const lines = (await response.text()).trim().split("\n").map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.equal(lines.length, 2);
    assert.ok(lines[0]!.command);
    const error = lines[1]!.error as { code: number; details: { reason: string }[] };
    assert.equal(error.code, 10);
    assert.equal(error.details[0]!.reason, "WATCH_LOST");
  });

  test("a client leaving mid-stream cancels it; the edge keeps serving", async () => {
    const response = await fetch(fx.url + "/v1/tenants/t1/commands/slow:watch");
    const reader = response.body!.getReader();
    await reader.read();
    await reader.cancel();
    const again = await fetch(fx.url + "/v1/tenants/t1/commands/c10:watch");
    assert.equal((await again.text()).trim().split("\n").length, 3);
  });

  test("the unary method beside the streaming one still routes", async () => {
    const response = await fetch(fx.url + "/v1/tenants/t1/commands/c1");
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { command: { commandId: "c1", tenant: "t1", state: "COMMAND_STATE_APPLIED", version: "3" } });
  });
});

describe("health and CORS", () => {
  test("/healthz and /readyz", async () => {
    const live = await fetch(fx.url + "/healthz");
    assert.equal(live.status, 200);
    assert.deepEqual(await live.json(), { status: "SERVING" });
    const ready = await fetch(fx.url + "/readyz");
    assert.equal(ready.status, 200);
    const readyBody = (await ready.json()) as { status: string; upstreams: unknown; notReady: string[] };
    assert.equal(readyBody.status, "SERVING");
    assert.deepEqual(readyBody.upstreams, { "umw.v1.QueryService": "SERVING", "umw.v1.CommandService": "SERVING" });
    assert.deepEqual(readyBody.notReady, []);
  });

  test("no origin is allowed by default: no CORS headers, and a preflight gets none either", async () => {
    const preflight = await fetch(fx.url + entityPath("e1"), {
      method: "OPTIONS",
      headers: { origin: "https://app.example", "access-control-request-method": "PUT", "access-control-request-headers": "idempotency-key, content-type" },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get("access-control-allow-origin"), null);
    assert.equal(preflight.headers.get("access-control-allow-methods"), null);
    const response = await fetch(fx.url + entityPath("e1"), { headers: { origin: "https://app.example" } });
    assert.equal(response.headers.get("access-control-allow-origin"), null);
    await response.body?.cancel();
  });

  test("preflight and actual requests carry CORS headers (any origin with an explicit `*`)", async () => {
    const edge = await fx.startEdge({ corsOrigins: ["*"] });
    const preflight = await fetch(edge.url + entityPath("e1"), {
      method: "OPTIONS",
      headers: { origin: "https://app.example", "access-control-request-method": "PUT", "access-control-request-headers": "idempotency-key, content-type" },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get("access-control-allow-origin"), "*");
    assert.match(preflight.headers.get("access-control-allow-methods") ?? "", /PUT/);
    assert.match(preflight.headers.get("access-control-allow-headers") ?? "", /idempotency-key/);
    assert.match(preflight.headers.get("access-control-allow-headers") ?? "", /connect-protocol-version/);
    const response = await fetch(edge.url + entityPath("e1"), { headers: { origin: "https://app.example" } });
    assert.equal(response.headers.get("access-control-allow-origin"), "*");
    const exposed = response.headers.get("access-control-expose-headers") ?? "";
    for (const header of ["cache-status", "etag", "grpc-status", "grpc-message", "x-request-id", "retry-after", "ratelimit", "ratelimit-policy"]) assert.match(exposed, new RegExp(header));
    await response.body?.cancel();
    await edge.stop();
  });

  test("configured origins: allowed ones are echoed with Vary, others get no CORS headers", async () => {
    const edge = await fx.startEdge({ corsOrigins: ["https://good.example"] });
    const good = await fetch(`${edge.url}${entityPath("e1")}`, { headers: { origin: "https://good.example" } });
    assert.equal(good.headers.get("access-control-allow-origin"), "https://good.example");
    assert.match(good.headers.get("vary") ?? "", /Origin/);
    await good.body?.cancel();
    const bad = await fetch(`${edge.url}${entityPath("e1")}`, { headers: { origin: "https://evil.example" } });
    assert.equal(bad.headers.get("access-control-allow-origin"), null);
    await bad.body?.cancel();
    await edge.stop();
  });
});
