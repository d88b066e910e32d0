// A realtime subscription with nothing to send yet, through real Envoy (the static configuration of
// services/control-plane: jwt_authn with the dev issuer's keys, ext_authz with the OPA policy, the
// grpc_web filter and the Connect bridge) in front of the real hub (Kafka + Postgres): its response
// headers (200 and the protocol's content type) arrive within 3 s, before any message, over gRPC-web
// and Connect; then a change arrives on that same stream. A refusal is still a status with its reason.
//
//   source scripts/infra-env.sh && node --import tsx --test test/envoy/realtime-open.test.ts
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import type { SubscribeRequestSchema } from "../../gen/umw/v1/realtime_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { RunningRealtimeHub } from "../../services/realtime/index.js";
import { TEST_AUDIENCE, TestIssuer } from "../support/dev-tokens.js";
import { waitFor } from "../support/wait.js";
import { Harness, unique } from "../realtime/harness.js";
import { connectStream, curlGrpcWebStream, within, type OpenStream } from "../realtime/stream-open.js";
import { requireEnvoy, startPolicyServer, startStaticEnvoy, type StaticEnvoy } from "./support.js";

const TYPE = "doc";
const OPEN_WITHIN_MS = 3_000;
const entityTopic = (tenant: string, id: string) => ({ target: { case: "entity" as const, value: { tenant, type: TYPE, id } } });

describe("Envoy: an empty realtime subscription opens at once (gRPC-web, Connect)", { timeout: 120_000 }, () => {
  const h = new Harness(["envoy", "policy"]);
  let hub: RunningRealtimeHub;
  let issuer: TestIssuer;
  let policy: Awaited<ReturnType<typeof startPolicyServer>>;
  let envoy: StaticEnvoy;
  let dir: string;
  const streams: OpenStream[] = [];

  before(async () => {
    requireEnvoy();
    await h.setUp();
    // No heartbeat within the test: the headers cannot ride on one. Envoy asserts the principal.
    hub = await h.startHub({ heartbeatMs: 120_000 }, ["envoy"]);
    issuer = await TestIssuer.create();
    policy = await startPolicyServer(h.certs.identity("policy"));
    dir = mkdtempSync(join(tmpdir(), "umw-envoy-realtime-"));
    envoy = await startStaticEnvoy({
      dir,
      title: "realtime-open",
      certsDir: h.certs.dir,
      upstreams: { realtime: { host: "127.0.0.1", port: hub.port }, policy: { host: "127.0.0.1", port: policy.port } },
      auth: {
        issuer: issuer.issuer.issuer,
        audience: TEST_AUDIENCE,
        jwks: { inline: JSON.stringify(issuer.issuer.jwks) },
        clockSkewS: 5,
        jwksCacheS: 300,
        claims: { subject: "sub", tenant: "tenant", scopes: "scope", roles: "roles" },
        realm: "umw-test",
      },
      healthy: ["realtime", "policy"],
    });
  });

  after(async () => {
    for (const stream of streams) stream.close();
    await envoy?.stop();
    await policy?.stop();
    issuer?.close();
    await h.tearDown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Opens the stream on an entity nobody wrote yet, checks its headers came in time, then that a write arrives on it. */
  const opensThenDelivers = async (open: (token: string, request: MessageInitShape<typeof SubscribeRequestSchema>) => OpenStream, contentType: RegExp) => {
    const tenant = unique("envoy");
    const id = "e1";
    const stream = open(await issuer.token(tenant), { tenant, topics: [entityTopic(tenant, id)] });
    streams.push(stream);
    try {
      const headers = await within(stream.headers, OPEN_WITHIN_MS, "the response headers through Envoy of a subscription with nothing to send");
      assert.equal(headers.status, 200);
      assert.match(headers.contentType, contentType);
      assert.equal(hub.stats().streams, 1, "the headers came from the hub, which holds the stream");
      await h.write(tenant, TYPE, id, { n: 1 });
      const change = await stream.next(10_000);
      assert.equal(change.message.case, "change");
      assert.equal(change.message.value.entity?.id, id);
      assert.equal(change.message.value.entity?.version, 1n);
    } finally {
      stream.close();
      await waitFor(() => hub.stats().streams === 0, { what: "Envoy let the upstream stream go" });
    }
  };

  test("gRPC-web over HTTP/1.1 (curl): 200 application/grpc-web+proto at once, then a change", async () => {
    await opensThenDelivers((token, request) => curlGrpcWebStream(envoy.url, false, token, request), /^application\/grpc-web\+proto/);
  });

  test("gRPC-web over HTTP/2 (curl, h2c): 200 application/grpc-web+proto at once, then a change", async () => {
    await opensThenDelivers((token, request) => curlGrpcWebStream(envoy.url, true, token, request), /^application\/grpc-web\+proto/);
  });

  test("Connect over HTTP/1.1 (connect-node): 200 application/connect+proto at once, then a change", async () => {
    await opensThenDelivers((token, request) => connectStream(envoy.url, "1.1", token, request), /^application\/connect\+proto/);
  });

  test("a refused empty subscription is PERMISSION_DENIED with its reason through Envoy (gRPC-web, Connect)", async () => {
    const [mine, theirs] = [unique("mine"), unique("theirs")];
    const token = await issuer.token(mine);
    const open = hub.stats().streams;
    const request = { tenant: mine, topics: [entityTopic(theirs, "secret")] };
    const web = curlGrpcWebStream(envoy.url, false, token, request);
    streams.push(web);
    const refusal = await web.next(OPEN_WITHIN_MS).then(
      () => assert.fail("expected a gRPC-web refusal"),
      (caught: unknown) => String(caught),
    );
    assert.match(refusal, /grpc-status:\s*7/);
    const connect = connectStream(envoy.url, "1.1", token, request);
    streams.push(connect);
    const error = await connect.next(OPEN_WITHIN_MS).then(
      () => assert.fail("expected PERMISSION_DENIED"),
      (caught: unknown) => caught,
    );
    assert.ok(error instanceof ConnectError, `expected a ConnectError, got ${String(error)}`);
    assert.equal(error.code, Code.PermissionDenied);
    assert.ok(error.findDetails(ErrorInfoSchema).length > 0, "the refusal carries an ErrorInfo");
    assert.equal(hub.stats().streams, open, "no stream was admitted");
  });
});
