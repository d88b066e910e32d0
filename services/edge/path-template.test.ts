// Unit tests: HttpRule path template parsing and matching, and the route table's precedence.
//
//   node --import tsx --test services/edge/path-template.test.ts
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  decodeSegment,
  matchPathTemplate,
  parsePathTemplate,
  PathDecodeError,
  PathTemplateError,
  splitRequestPath,
} from "./path-template.js";
import { readHttpBindings } from "./http-rules.js";
import { RouteTable } from "./route-table.js";
import { CommandService } from "../../gen/umw/v1/command_pb.js";
import { QueryService } from "../../gen/umw/v1/query_pb.js";

/** Match a request path against a template, verb handling included. */
function match(template: string, path: string): string[] | undefined {
  const parsed = parsePathTemplate(template);
  const parts = splitRequestPath(path, parsed.verb);
  return parts && matchPathTemplate(parsed, parts);
}

describe("parsePathTemplate", () => {
  test("literals, variables, the {var} = {var=*} shorthand", () => {
    const t = parsePathTemplate("/v1/tenants/{tenant}/types/{type}/entities/{id}");
    assert.deepEqual(t.segments.map((s) => (s.kind === "literal" ? s.value : s.kind)), ["v1", "tenants", "single", "types", "single", "entities", "single"]);
    assert.deepEqual(t.variables.map((v) => [v.fieldPath, v.start, v.end, v.multi]), [["tenant", 2, 3, false], ["type", 4, 5, false], ["id", 6, 7, false]]);
    assert.equal(t.verb, undefined);
    assert.equal(t.literals, 4);
    assert.equal(t.open, false);
  });

  test("multi-segment variables, nested field paths, verbs", () => {
    const t = parsePathTemplate("/v1/{book.name=shelves/*/books/*}:publish");
    assert.equal(t.verb, "publish");
    assert.deepEqual(t.variables, [{ fieldPath: "book.name", start: 1, end: 5, multi: false }]);
    assert.deepEqual(t.segments.map((s) => (s.kind === "literal" ? s.value : s.kind)), ["v1", "shelves", "single", "books", "single"]);
  });

  test("** as the last segment, inside or outside a variable", () => {
    assert.equal(parsePathTemplate("/v1/files/**").open, true);
    const t = parsePathTemplate("/v1/{name=files/**}");
    assert.deepEqual(t.variables, [{ fieldPath: "name", start: 1, end: 3, multi: true }]);
    assert.equal(parsePathTemplate("/v1/{path=**}:download").verb, "download");
  });

  test("bad templates are refused with the reason", () => {
    for (const [template, reason] of [
      ["v1/things", /start with/],
      ["/v1/**/x", /last segment/],
      ["/v1/{a=**}/{b}", /last segment/],
      ["/v1/{a}/{a}", /bound twice/],
      ["/v1/{a=b/{c}}", /nest/],
      ["/v1/{a", /unbalanced|unterminated/],
      ["/v1/a}", /unbalanced/],
      ["/v1//x", /empty segment/],
      ["/v1/{1a}", /field path/],
      ["/v1/{a=}", /empty pattern/],
      ["/v1/x:", /verb/],
      ["/v1/a b", /literal/],
    ] as const) {
      assert.throws(() => parsePathTemplate(template), (error: unknown) => error instanceof PathTemplateError && reason.test(error.message), template);
    }
  });
});

describe("matching", () => {
  test("single variables take one non-empty segment", () => {
    assert.deepEqual(match("/v1/tenants/{tenant}/commands/{id}", "/v1/tenants/t1/commands/c1"), ["t1", "c1"]);
    assert.equal(match("/v1/tenants/{tenant}/commands/{id}", "/v1/tenants/t1/commands/c1/x"), undefined);
    assert.equal(match("/v1/tenants/{tenant}/commands/{id}", "/v1/tenants/t1/commands"), undefined);
    assert.equal(match("/v1/tenants/{tenant}/commands/{id}", "/v1/tenants//commands/c1"), undefined);
    assert.equal(match("/v1/tenants/{tenant}/commands/{id}", "/v1/tenants/t1/commands/"), undefined);
    assert.equal(match("/v1/tenants/{tenant}", "/v2/tenants/t1"), undefined);
  });

  test("multi-segment variables capture their literal parts", () => {
    assert.deepEqual(match("/v1/{name=shelves/*/books/*}", "/v1/shelves/s1/books/b1"), ["shelves/s1/books/b1"]);
    assert.equal(match("/v1/{name=shelves/*/books/*}", "/v1/shelves/s1/notes/b1"), undefined);
  });

  test("** takes zero or more segments", () => {
    assert.deepEqual(match("/v1/{path=files/**}", "/v1/files/a/b/c"), ["files/a/b/c"]);
    assert.deepEqual(match("/v1/{path=files/**}", "/v1/files"), ["files"]);
    assert.deepEqual(match("/v1/files/{path=**}", "/v1/files/x"), ["x"]);
    assert.deepEqual(match("/v1/files/**", "/v1/files/x/y"), []);
  });

  test("verbs: required when the template has one; the rest of the path matches as usual", () => {
    assert.deepEqual(match("/v1/tenants/{tenant}/commands/{id}:watch", "/v1/tenants/t1/commands/c1:watch"), ["t1", "c1"]);
    assert.equal(match("/v1/tenants/{tenant}/commands/{id}:watch", "/v1/tenants/t1/commands/c1"), undefined);
    assert.equal(match("/v1/tenants/{tenant}/commands/{id}:watch", "/v1/tenants/t1/commands/c1:stop"), undefined);
    assert.deepEqual(match("/v1/things:batchGet", "/v1/things:batchGet"), []);
    assert.equal(match("/v1/things:batchGet", "/v1/things/:batchGet"), undefined);
    // Without a verb in the template, ":" is part of the value.
    assert.deepEqual(match("/v1/tenants/{tenant}/commands/{id}", "/v1/tenants/t1/commands/c1:watch"), ["t1", "c1:watch"]);
  });

  test("percent-decoding of captures and literals", () => {
    assert.deepEqual(match("/v1/things/{id}", "/v1/things/a%20b%2Fc"), ["a b/c"]);
    assert.deepEqual(match("/v1/th%69ngs/{id}", "/v1/th%69ngs/x"), ["x"]);
    assert.deepEqual(match("/v1/things/{id}", "/v1/th%69ngs/x"), ["x"]);
    assert.deepEqual(match("/v1/{p=files/**}", "/v1/files/a%2Fb/c%20d"), ["files/a%2Fb/c d"]);
    assert.throws(() => match("/v1/things/{id}", "/v1/things/%E0%A4%A"), PathDecodeError);
    assert.equal(decodeSegment("plain"), "plain");
  });
});

describe("route table (umw protos)", () => {
  const table = new RouteTable(readHttpBindings([QueryService, CommandService], new Set(["umw.v1.Entity"])));

  test("compiles every annotated method", () => {
    assert.equal(table.size, 9);
  });

  test("a verb route wins over a plain route that would take the verb as an id", () => {
    assert.equal(table.match("GET", "/v1/tenants/t/commands/c1:watch")?.binding.method.name, "WatchCommand");
    assert.equal(table.match("GET", "/v1/tenants/t/commands/c1")?.binding.method.name, "GetCommand");
    assert.equal(table.match("GET", "/v1/tenants/t/types/x/entities:batchGet")?.binding.method.name, "BatchGetEntities");
    assert.equal(table.match("GET", "/v1/tenants/t/types/x/entities")?.binding.method.name, "ListEntities");
    assert.equal(table.match("GET", "/v1/tenants/t/types/x/entities/e")?.binding.method.name, "GetEntity");
  });

  test("methods by HTTP verb; HEAD as GET; allowed methods for 405", () => {
    assert.equal(table.match("PUT", "/v1/tenants/t/types/x/entities/e")?.binding.method.name, "UpdateEntity");
    assert.equal(table.match("PATCH", "/v1/tenants/t/types/x/entities/e")?.binding.method.name, "PatchEntity");
    assert.equal(table.match("DELETE", "/v1/tenants/t/types/x/entities/e")?.binding.method.name, "DeleteEntity");
    assert.equal(table.match("HEAD", "/v1/tenants/t/types/x/entities/e")?.binding.method.name, "GetEntity");
    assert.equal(table.match("POST", "/v1/tenants/t/types/x/entities/e"), undefined);
    assert.deepEqual(table.allowed("/v1/tenants/t/types/x/entities/e").sort(), ["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "PUT"]);
    assert.deepEqual(table.allowed("/v1/nothing"), []);
  });

  test("bindings know their body field and ETag locator", () => {
    const create = table.match("POST", "/v1/tenants/t/types/x/entities")!.binding;
    assert.equal(typeof create.body === "object" && create.body.name, "data");
    assert.equal(create.etag, undefined);
    const get = table.match("GET", "/v1/tenants/t/types/x/entities/e")!.binding;
    assert.deepEqual(get.etag?.map((field) => field.name), ["entity", "version"]);
  });
});
