// Bounded fuzz of the edge's REST and Connect surfaces (fast-check, fixed seed): random methods,
// paths, headers, bodies, encodings and content types against an edge in front of the fake
// upstreams. Whatever comes in, no 5xx (except Connect's 501 for an unknown encoding and a 504 for a
// deadline the caller set), and every error body is a google.rpc.Status (REST) or a Connect error
// (RPC paths), each with an ErrorInfo.
//
//   node --import tsx --test test/edge/fuzz.test.ts
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { brotliCompressSync, gzipSync } from "node:zlib";
import fc from "fast-check";
import { startFixture, type Fixture } from "./fixtures.js";

const SEED = 20_261_203;
const RUNS = 3_000;
const CONCURRENCY = 16;

let fx: Fixture;
before(async () => {
  fx = await startFixture({ timeoutMs: 2_000 });
});
after(async () => {
  await fx?.close();
});

interface Probe {
  readonly method: string;
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body: Uint8Array | undefined;
}

const RPC_PATHS = [
  "/umw.v1.QueryService/GetEntity",
  "/umw.v1.QueryService/BatchGetEntities",
  "/umw.v1.QueryService/ListEntities",
  "/umw.v1.CommandService/CreateEntity",
  "/umw.v1.CommandService/UpdateEntity",
  "/umw.v1.CommandService/PatchEntity",
  "/umw.v1.CommandService/DeleteEntity",
  "/umw.v1.CommandService/GetCommand",
  "/umw.v1.CommandService/WatchCommand",
];

// Ids never met by the fake upstreams' scripted failures ("boom", "busy", "slow", ...): start with z.
const segment = fc.oneof(
  fc.stringMatching(/^z[a-z0-9._~-]{0,10}$/),
  fc.constantFrom("", "%", "%zz", "%2F", "%00", "..", ".", "z%20y", "z:watch", "z:batchGet", "ẑ"),
);
const restPath = fc.oneof(
  fc.tuple(segment, segment, segment).map(([t, ty, id]) => `/v1/tenants/${t}/types/${ty}/entities/${id}`),
  fc.tuple(segment, segment).map(([t, ty]) => `/v1/tenants/${t}/types/${ty}/entities`),
  fc.tuple(segment, segment).map(([t, ty]) => `/v1/tenants/${t}/types/${ty}/entities:batchGet`),
  fc.tuple(segment, segment).map(([t, c]) => `/v1/tenants/${t}/commands/${c}`),
  fc.tuple(segment, segment).map(([t, c]) => `/v1/tenants/${t}/commands/${c}:watch`),
  fc.array(segment, { maxLength: 6 }).map((parts) => `/${parts.join("/")}`),
);
const query = fc.oneof(
  fc.constant(""),
  fc.array(fc.tuple(fc.constantFrom("ids", "pageSize", "page_size", "pageToken", "minVersion", "x", "fields", "%"), segment), { maxLength: 4 }).map(
    (pairs) => (pairs.length ? `?${pairs.map(([k, v]) => `${k}=${v}`).join("&")}` : ""),
  ),
);
const path = fc.oneof(fc.tuple(restPath, query).map(([p, q]) => p + q), fc.constantFrom(...RPC_PATHS), fc.constantFrom("/healthz", "/", "/umw.v1.QueryService/", "/umw.v1.Nope/GetEntity"));

const jsonBody = fc.oneof(
  fc.json({ maxDepth: 4 }),
  fc.record({ tenant: segment, type: segment, id: segment, data: fc.jsonValue({ maxDepth: 3 }), minVersion: fc.oneof(fc.integer(), fc.string()) }).map((v) => JSON.stringify(v)),
  fc.constantFrom('{"tenant":', "[".repeat(5_000), '{"data":{"a":[1,{"b":', "null", '"x"', "{}", '{"ids":"a"}', '{"pageSize":-1}', '{"minVersion":"1e999"}'),
);
const body = fc.oneof(
  fc.constant(undefined),
  jsonBody.map((text) => new TextEncoder().encode(text)),
  fc.uint8Array({ maxLength: 64 }),
  // A Connect / gRPC-web envelope around random bytes.
  fc.tuple(fc.constantFrom(0, 1, 2, 0x80), fc.uint8Array({ maxLength: 32 })).map(([flag, data]) => {
    const out = new Uint8Array(5 + data.length);
    out[0] = flag;
    new DataView(out.buffer).setUint32(1, data.length);
    out.set(data, 5);
    return out;
  }),
);
const contentType = fc.option(
  fc.constantFrom(
    "application/json",
    "application/json; charset=utf-8",
    "application/proto",
    "application/connect+json",
    "application/connect+proto",
    "application/grpc-web+proto",
    "application/grpc-web+json",
    "application/grpc-web-text",
    "text/plain",
    "text/html",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/",
  ),
  { nil: undefined },
);
const encoding = fc.option(fc.constantFrom("gzip", "br", "zstd", "identity", "deflate", "gzip, br", "x"), { nil: undefined });
const extraHeaders = fc.record(
  {
    "connect-timeout-ms": fc.oneof(fc.constantFrom("0", "1", "-1", "x", "99999999999", "2147483648", "3000000000"), fc.nat({ max: 5_000 }).map(String)),
    "grpc-timeout": fc.constantFrom("1m", "1000H", "99999999H", "x", "5S", "1n"),
    "connect-protocol-version": fc.constantFrom("1", "2", ""),
    "if-none-match": fc.constantFrom("*", 'W/"7"', '"x"', "garbage"),
    "idempotency-key": fc.constantFrom('"k1"', "k1", '""', "x".repeat(300)),
    "x-request-id": fc.constantFrom("r1", "", "x".repeat(500)),
    "accept-encoding": fc.constantFrom("gzip", "br", "zstd", "*"),
  },
  { requiredKeys: [] },
);

const probe: fc.Arbitrary<Probe> = fc
  .record({
    method: fc.constantFrom("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"),
    path,
    contentType,
    encoding,
    compressBody: fc.boolean(),
    extra: extraHeaders,
    body,
  })
  .map(({ method, path, contentType, encoding, compressBody, extra, body }) => {
    const headers: Record<string, string> = { ...extra };
    if (contentType) headers["content-type"] = contentType;
    let payload = method === "GET" || method === "HEAD" ? undefined : body;
    if (encoding) {
      headers["content-encoding"] = encoding;
      // Half the time the body really is compressed as announced.
      if (payload && compressBody && encoding === "gzip") payload = gzipSync(payload);
      if (payload && compressBody && encoding === "br") payload = brotliCompressSync(payload);
    }
    return { method, path, headers, body: payload };
  });

interface Outcome {
  readonly status: number;
  readonly type: string;
  readonly text: string;
}

async function send(p: Probe): Promise<Outcome> {
  const response = await fetch(fx.url + p.path, { method: p.method, headers: p.headers, body: p.body ? Buffer.from(p.body) : undefined, signal: AbortSignal.timeout(10_000) });
  // Streams (NDJSON, Connect streaming, gRPC-web) end by themselves: the fake upstreams' streams are short.
  const text = p.method === "HEAD" ? "" : await response.text();
  return { status: response.status, type: response.headers.get("content-type") ?? "", text };
}

function check(p: Probe, o: Outcome): void {
  const where = `${p.method} ${p.path} ${JSON.stringify(p.headers)} → ${o.status} ${o.type} ${o.text.slice(0, 300)}`;
  const isRpc = RPC_PATHS.includes(p.path.split("?")[0]!);
  if (o.status >= 500) {
    const json = safeJson(o.text) as { code?: unknown } | undefined;
    const allowed =
      (o.status === 501 && isRpc && json?.code === "unimplemented") ||
      (o.status === 504 && (p.headers["connect-timeout-ms"] !== undefined || p.headers["grpc-timeout"] !== undefined) && json?.code === "deadline_exceeded");
    assert.ok(allowed, `5xx: ${where}`);
  }
  if (o.status < 400 || p.method === "HEAD") return;
  const json = safeJson(o.text) as { code?: unknown; message?: unknown; details?: unknown } | undefined;
  assert.ok(json && typeof json === "object", `error body is not JSON: ${where}`);
  assert.equal(typeof json.message, "string", `no message: ${where}`);
  assert.ok(Array.isArray(json.details) && json.details.length > 0, `no details: ${where}`);
  if (isRpc && typeof json.code === "string") {
    // A Connect error: details as {type, value}, an ErrorInfo among them.
    assert.ok((json.details as { type?: string }[]).some((d) => d.type === "google.rpc.ErrorInfo"), `no ErrorInfo: ${where}`);
  } else {
    // A google.rpc.Status.
    assert.equal(typeof json.code, "number", `code is not a number: ${where}`);
    assert.ok((json.details as { "@type"?: string; reason?: string }[]).some((d) => d["@type"]?.endsWith("google.rpc.ErrorInfo") && typeof d.reason === "string"), `no ErrorInfo: ${where}`);
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

test(`${RUNS} random requests: no 5xx, every error a Status with an ErrorInfo`, { timeout: 60_000 }, async (t) => {
  const probes = fc.sample(probe, { seed: SEED, numRuns: RUNS });
  const started = Date.now();
  const statuses = new Map<number, number>();
  let next = 0;
  const failures: string[] = [];
  const worker = async () => {
    while (next < probes.length) {
      const p = probes[next++]!;
      try {
        const outcome = await send(p);
        statuses.set(outcome.status, (statuses.get(outcome.status) ?? 0) + 1);
        check(p, outcome);
      } catch (error) {
        failures.push(`${(error as Error).message} (${p.method} ${p.path} ${JSON.stringify(p.headers)})`);
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  t.diagnostic(`${probes.length} requests in ${Date.now() - started} ms; statuses ${JSON.stringify(Object.fromEntries([...statuses].sort(([a], [b]) => a - b)))}`);
  assert.deepEqual(failures.slice(0, 10), [], `${failures.length} failing requests`);
});
