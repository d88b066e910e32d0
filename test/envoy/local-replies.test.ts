// Envoy's own answers in the caller's protocol (services/control-plane/local-replies.ts): when
// ext_authz gets no answer from the policy service — it answers after Envoy's 500 ms timeout, or it
// is down — a real Envoy answers UNAVAILABLE with the ErrorInfo reason AUTHORIZATION_UNAVAILABLE and
// Retry-After: google.rpc.Status JSON over REST, a status a gRPC-web or Connect client reads as one
// (not a bodiless 503), and the call never reaches the service. A policy that answers in time lets
// the call through, so the refusals come from the timeout, not from the setup.
//
//   node --import tsx --test test/envoy/local-replies.test.ts
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import { Code as ConnectCode, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { Authorization, type CheckRequest } from "../../gen/envoy/service/auth/v3/external_auth_pb.js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { GetEntityRequestSchema, QueryService } from "../../gen/umw/v1/query_pb.js";
import { CommandService } from "../../gen/umw/v1/command_pb.js";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { credentials, makeGenericClientConstructor, Metadata, type ServiceError } from "@grpc/grpc-js";
import type { CallContext } from "../../runtime/call-context.js";
import { MeshServer } from "../../runtime/server.js";
import { serverCredentials } from "../../runtime/tls.js";
import { testCerts, type TestCerts } from "../support/certs.js";
import { waitFor } from "../support/wait.js";
import { requireEnvoy, startStaticEnvoy, type StaticEnvoy } from "./support.js";

const log = pino({ level: "silent" });
/** Tenants whose checks the stand-in policy answers only after Envoy's 500 ms timeout. */
const SLOW = "slow";

describe("Envoy: ext_authz without the policy's answer is UNAVAILABLE AUTHORIZATION_UNAVAILABLE in every protocol", { timeout: 120_000 }, () => {
  let certs: TestCerts;
  let dir: string;
  let query: MeshServer;
  let policy: MeshServer;
  let envoy: StaticEnvoy;
  const served: string[] = [];

  before(async () => {
    requireEnvoy();
    certs = testCerts(["query", "policy", "envoy"]);
    dir = mkdtempSync(join(tmpdir(), "umw-envoy-local-replies-"));
    query = new MeshServer({ name: "query", host: "127.0.0.1", port: 0, credentials: serverCredentials(certs.identity("query")), log, drainTimeoutMs: 200 });
    query.addService(QueryService, {
      async getEntity(request) {
        served.push(`${request.tenant}/${request.id}`);
        return { entity: { tenant: request.tenant, type: request.type, id: request.id, version: 1n, data: {} } };
      },
      async batchGetEntities() {
        return {};
      },
      async listEntities() {
        return {};
      },
    });
    // A stand-in policy: allows everything, but answers a check that names the slow tenant only after 1.5 s.
    policy = new MeshServer({ name: "policy", host: "127.0.0.1", port: 0, credentials: serverCredentials(certs.identity("policy")), log, drainTimeoutMs: 200 });
    policy.addService(Authorization, {
      async check(request: CheckRequest, ctx: CallContext) {
        const http = request.attributes?.request?.http;
        const named = `${http?.path ?? ""} ${Buffer.from(http?.rawBody ?? new Uint8Array()).toString("latin1")}`;
        if (named.includes(SLOW)) await sleep(1_500, undefined, { signal: ctx.signal }).catch(() => undefined);
        return { status: { code: 0 }, httpResponse: { case: "okResponse", value: {} } };
      },
    });
    const [queryPort, policyPort] = [await query.start(), await policy.start()];
    envoy = await startStaticEnvoy({
      dir,
      title: "local replies",
      certsDir: certs.dir,
      upstreams: { query: { host: "127.0.0.1", port: queryPort }, policy: { host: "127.0.0.1", port: policyPort } },
      healthy: ["query", "policy"],
    });
    await waitFor(async () => ((await rest("acme")).status === 200 ? true : undefined), { what: "a read through Envoy", timeoutMs: 30_000, tolerateErrors: true });
  });

  after(async () => {
    await envoy?.stop();
    await query?.stop();
    await policy?.stop();
    certs?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const rest = (tenant: string) => fetch(`${envoy.url}/v1/tenants/${tenant}/types/todo/entities/e1`);
  const transports: [string, () => Transport][] = [
    ["gRPC-web", () => createGrpcWebTransport({ baseUrl: envoy.url, useBinaryFormat: true })],
    ["Connect", () => createConnectTransport({ baseUrl: envoy.url, useBinaryFormat: true })],
  ];

  const expectRestUnavailable = async (response: Response) => {
    assert.equal(response.status, 503);
    assert.match(response.headers.get("content-type") ?? "", /^application\/json/);
    assert.equal(response.headers.get("retry-after"), "1");
    const status = (await response.json()) as { code: number; details: { reason?: string; domain?: string }[] };
    assert.equal(status.code, 14);
    assert.equal(status.details[0]?.reason, "AUTHORIZATION_UNAVAILABLE");
    assert.equal(status.details[0]?.domain, "umw.dev");
  };

  const expectRpcUnavailable = async (transport: Transport, tenant: string) => {
    const error = await createClient(QueryService, transport)
      .getEntity({ tenant, type: "todo", id: "e1" })
      .then(
        () => assert.fail("expected UNAVAILABLE"),
        (caught: unknown) => ConnectError.from(caught),
      );
    assert.equal(error.code, ConnectCode.Unavailable, error.message);
    assert.equal(error.findDetails(ErrorInfoSchema)[0]?.reason, "AUTHORIZATION_UNAVAILABLE", error.message);
  };

  test("REST: a check that times out is 503 with a google.rpc.Status body and Retry-After; one in time passes", async () => {
    const allowed = await rest("acme");
    assert.equal(allowed.status, 200, await allowed.clone().text());
    await allowed.arrayBuffer();
    const started = Date.now();
    await expectRestUnavailable(await rest(SLOW));
    assert.ok(Date.now() - started < 1_400, "answered at the ext_authz timeout, not after the slow check");
    assert.ok(!served.includes(`${SLOW}/e1`), "the call never reached the service");
  });

  for (const [name, transport] of transports) {
    test(`${name}: a check that times out is UNAVAILABLE with the reason; one in time passes`, async () => {
      const allowed = await createClient(QueryService, transport()).getEntity({ tenant: "acme", type: "todo", id: "e1" });
      assert.equal(allowed.entity?.id, "e1");
      await expectRpcUnavailable(transport(), SLOW);
      assert.ok(!served.includes(`${SLOW}/e1`), "the call never reached the service");
    });
  }

  test("gRPC (grpc-js, h2c) and a Connect stream: a check that times out is UNAVAILABLE with the reason", async () => {
    const Generic = makeGenericClientConstructor({}, "umw");
    const client = new Generic(`127.0.0.1:${new URL(envoy.url).port}`, credentials.createInsecure());
    try {
      const error = await new Promise<ServiceError>((resolve, reject) =>
        client.makeUnaryRequest(
          "/umw.v1.QueryService/GetEntity",
          (value: unknown) => Buffer.from(toBinary(GetEntityRequestSchema, create(GetEntityRequestSchema, value as never))),
          (bytes: Buffer) => bytes,
          { tenant: SLOW, type: "todo", id: "e1" },
          new Metadata(),
          { deadline: Date.now() + 10_000 },
          (failure: ServiceError | null) => (failure ? resolve(failure) : reject(new Error("expected UNAVAILABLE"))),
        ),
      );
      assert.equal(error.code, 14, error.details);
      const details = error.metadata.get("grpc-status-details-bin")[0];
      assert.ok(details instanceof Buffer, "the status carries its details");
      assert.deepEqual(fromBinary(StatusSchema, details).details.map((detail) => anyUnpack(detail, ErrorInfoSchema)?.reason), ["AUTHORIZATION_UNAVAILABLE"]);
    } finally {
      client.close();
    }
    // A Connect server stream (WatchCommand): the error in its end-stream message.
    const stream = createClient(CommandService, transports[1]![1]()).watchCommand({ tenant: SLOW, commandId: "c1" });
    const error = await (async () => {
      for await (const message of stream) assert.fail(`no message expected, got ${JSON.stringify(message)}`);
    })().then(
      () => assert.fail("expected UNAVAILABLE"),
      (caught: unknown) => ConnectError.from(caught),
    );
    assert.equal(error.code, ConnectCode.Unavailable, error.message);
    assert.equal(error.findDetails(ErrorInfoSchema)[0]?.reason, "AUTHORIZATION_UNAVAILABLE", error.message);
  });

  test("the policy service down: the same answers, in every protocol", async () => {
    await policy.stop();
    await waitFor(async () => ((await rest("acme")).status === 503 ? true : undefined), { what: "Envoy without a policy service", timeoutMs: 15_000 });
    await expectRestUnavailable(await rest("acme"));
    for (const [, transport] of transports) await expectRpcUnavailable(transport(), "acme");
  });
});
