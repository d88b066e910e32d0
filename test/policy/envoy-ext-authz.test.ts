import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { credentials as grpcCredentials } from "@grpc/grpc-js";
import { Authorization } from "../../gen/envoy/service/auth/v3/external_auth_pb.js";
import { QueryService } from "../../gen/umw/v1/query_pb.js";
import { createClient } from "../../runtime/client.js";
import { Code, RpcError } from "../../runtime/errors.js";
import { rootLogger } from "../../runtime/logger.js";
import { principalHeaders, type Principal } from "../../runtime/principal.js";
import { MeshServer } from "../../runtime/server.js";
import { serverCredentials } from "../../runtime/tls.js";
import { bootstrapYaml, staticBootstrap } from "../../services/control-plane/bootstrap.js";
import { AuthzPolicy, extAuthzHandlers } from "../../services/policy/index.js";
import { testCerts, type TestCerts } from "../support/certs.js";
import { freePort } from "../support/ports.js";
import { waitFor } from "../support/wait.js";
import { clusterHosts, requireEnvoy, startProcess, type Proc } from "../envoy/support.js";

const log = rootLogger("silent");
const alice: Principal = { kind: "user", subject: "alice", tenant: "acme", scopes: ["entities:read"], roles: [], expiresAt: Date.now() + 3_600_000 };

/**
 * Real Envoy (the configuration `umw envoy-config` renders, ext_authz included) in front of a
 * QueryService and the policy service. The x-umw-* headers stand in for what Envoy's jwt_authn sets
 * from a verified token; the policy believes them because Envoy's identity is a trusted peer.
 */
describe("Envoy ext_authz with the OPA policy", () => {
  let certs: TestCerts;
  let dir: string;
  let envoy: Proc;
  let port: number;
  let policyServer: MeshServer;
  let queryServer: MeshServer;
  const served: string[] = [];

  before(async () => {
    const bin = requireEnvoy();
    certs = testCerts(["query", "policy", "envoy"]);
    dir = mkdtempSync(join(tmpdir(), "umw-ext-authz-"));
    queryServer = new MeshServer({ name: "query", host: "127.0.0.1", port: 0, credentials: serverCredentials(certs.identity("query")), log });
    queryServer.addService(QueryService, {
      async getEntity(request) {
        served.push(`${request.tenant}/${request.id}`);
        return { entity: { tenant: request.tenant, type: request.type, id: request.id, version: 1n, data: { title: "through Envoy" } } };
      },
      async batchGetEntities() {
        return { entities: [], missingIds: [] };
      },
      async listEntities() {
        return { entities: [], nextPageToken: "" };
      },
    });
    const queryPort = await queryServer.start();
    policyServer = new MeshServer({ name: "policy", host: "127.0.0.1", port: 0, credentials: serverCredentials(certs.identity("policy")), log });
    policyServer.addService(Authorization, extAuthzHandlers(await AuthzPolicy.load(), new Set(["envoy"])));
    const policyPort = await policyServer.start();
    const [adminPort, closed] = [await freePort(), await freePort()];
    port = await freePort();
    const config = join(dir, "envoy.yaml");
    const bootstrap = staticBootstrap({
      certsDir: certs.dir,
      adminPort,
      listenerPort: port,
      descriptor: { path: resolve("gen/umw.binpb") },
      corsOrigins: ["*"],
      upstreams: {
        query: { host: "127.0.0.1", port: queryPort },
        command: { host: "127.0.0.1", port: closed },
        realtime: { host: "127.0.0.1", port: closed },
        policy: { host: "127.0.0.1", port: policyPort },
      },
    });
    writeFileSync(config, bootstrapYaml(bootstrap, "ext_authz test"));
    envoy = startProcess(bin, ["-c", config, "--use-dynamic-base-id", "--concurrency", "1", "--log-level", "warn", "--drain-time-s", "1"]);
    for (const cluster of ["query", "policy"]) {
      await waitFor(async () => (await clusterHosts(adminPort, cluster).catch(() => [])).some((host) => host.healthFlags === "healthy"), {
        what: `Envoy's ${cluster} cluster healthy`,
        timeoutMs: 45_000,
        everyMs: 100,
      });
    }
  });

  after(async () => {
    await envoy?.stop();
    await queryServer?.stop();
    await policyServer?.stop();
    certs?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const get = (tenant: string, id: string, principal: Principal | undefined) =>
    fetch(`http://127.0.0.1:${port}/v1/tenants/${tenant}/types/todo/entities/${id}`, { headers: principal ? principalHeaders(principal) : {} });

  test("REST: a read in the caller's tenant passes; another tenant is 403 CROSS_TENANT_ACCESS and never reaches the service", async () => {
    const allowed = await get("acme", "a1", alice);
    assert.equal(allowed.status, 200, await allowed.clone().text());
    assert.equal(((await allowed.json()) as { entity: { id: string } }).entity.id, "a1");
    assert.ok(served.includes("acme/a1"));

    const denied = await get("globex", "g1", alice);
    assert.equal(denied.status, 403);
    const body = (await denied.json()) as { code: number; details: Array<{ reason: string }> };
    assert.equal(body.code, Code.PERMISSION_DENIED);
    assert.equal(body.details[0]?.reason, "CROSS_TENANT_ACCESS");
    assert.ok(!served.some((entry) => entry.startsWith("globex/")), "the denied read never reached QueryService");
  });

  test("REST: a token without the operation's scope is 403 MISSING_SCOPE", async () => {
    const denied = await get("acme", "a2", { ...alice, scopes: ["entities:write"] });
    assert.equal(denied.status, 403);
    assert.equal(((await denied.json()) as { details: Array<{ reason: string }> }).details[0]?.reason, "MISSING_SCOPE");
    assert.ok(!served.includes("acme/a2"));
  });

  test("gRPC through Envoy: the tenant comes from the request message; the refusal is PERMISSION_DENIED with its ErrorInfo", async () => {
    const client = createClient(QueryService, `127.0.0.1:${port}`, grpcCredentials.createInsecure());
    try {
      const { entity } = await client.getEntity({ tenant: "acme", type: "todo", id: "a3" }, { headers: principalHeaders(alice) });
      assert.equal(entity?.id, "a3");
      await assert.rejects(client.getEntity({ tenant: "globex", type: "todo", id: "g3" }, { headers: principalHeaders(alice) }), (error: unknown) => {
        assert.ok(error instanceof RpcError, String(error));
        assert.equal(Code[error.code], "PERMISSION_DENIED", error.message);
        assert.equal(error.reason, "CROSS_TENANT_ACCESS");
        return true;
      });
      assert.ok(!served.includes("globex/g3"));
    } finally {
      client.close();
    }
  });

  test("with the policy service down, requests are refused (503), never let through", async () => {
    await policyServer.stop();
    const refused = await get("acme", "a4", alice);
    assert.equal(refused.status, 503);
    assert.ok(!served.includes("acme/a4"));
  });
});
