import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { credentials as grpcCredentials } from "@grpc/grpc-js";
import { Authorization } from "../../gen/envoy/service/auth/v3/external_auth_pb.js";
import { QueryService } from "../../gen/umw/v1/query_pb.js";
import { createClient } from "../../runtime/client.js";
import { Code, RpcError } from "../../runtime/errors.js";
import { rootLogger } from "../../runtime/logger.js";
import { MeshServer } from "../../runtime/server.js";
import { serverCredentials } from "../../runtime/tls.js";
import { AuthzPolicy, extAuthzHandlers } from "../../services/policy/index.js";
import { testCerts, type TestCerts } from "../support/certs.js";
import { OIDC_AUDIENCE, OidcIssuer, type OidcClient } from "../support/oidc-issuer.js";
import { waitFor } from "../support/wait.js";
import { requireEnvoy, startStaticEnvoy, type StaticEnvoy } from "../envoy/support.js";

const log = rootLogger("silent");
const ACME: OidcClient = { id: "acme-app", secret: "acme-secret-0123456789", tenant: "acme" };
const GLOBEX: OidcClient = { id: "globex-app", secret: "globex-secret-0123456789", tenant: "globex" };
/** What a client may send to pass itself off as another principal; Envoy drops it before jwt_authn. */
const FORGED = { "x-umw-principal": "root", "x-umw-tenant": "globex", "x-umw-scopes": "entities:read entities:write admin", "x-umw-roles": "admin" };

/**
 * Real Envoy (the configuration `umw envoy-config` renders: client x-umw-* dropped, jwt_authn
 * against a real OpenID Provider, the principal's x-umw-* set from the verified token, ext_authz)
 * in front of a QueryService and the policy service. Callers send bearer tokens only; the policy
 * believes the x-umw-* headers because Envoy's identity is a trusted peer and Envoy set them.
 */
describe("Envoy ext_authz with the OPA policy", { timeout: 120_000 }, () => {
  let oidc: OidcIssuer;
  let acmeToken: string;
  let certs: TestCerts;
  let dir: string;
  let envoy: StaticEnvoy;
  let port: number;
  let policyServer: MeshServer;
  let queryServer: MeshServer;
  const served: string[] = [];
  const seen: Record<string, string>[] = [];

  before(async () => {
    requireEnvoy();
    oidc = await OidcIssuer.start([ACME, GLOBEX]);
    acmeToken = await oidc.clientToken(ACME, "entities:read");
    certs = testCerts(["query", "policy", "envoy"]);
    dir = mkdtempSync(join(tmpdir(), "umw-ext-authz-"));
    queryServer = new MeshServer({ name: "query", host: "127.0.0.1", port: 0, credentials: serverCredentials(certs.identity("query")), log });
    queryServer.addService(QueryService, {
      async getEntity(request, ctx) {
        served.push(`${request.tenant}/${request.id}`);
        seen.push({ ...ctx.headers });
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
    const jwksUri = ((await (await fetch(`${oidc.issuer}/.well-known/openid-configuration`)).json()) as { jwks_uri: string }).jwks_uri;
    envoy = await startStaticEnvoy({
      dir,
      title: "ext_authz test",
      certsDir: certs.dir,
      corsOrigins: ["*"],
      upstreams: { query: { host: "127.0.0.1", port: queryPort }, policy: { host: "127.0.0.1", port: policyPort } },
      auth: {
        issuer: oidc.issuer,
        audience: OIDC_AUDIENCE,
        jwks: { uri: jwksUri },
        clockSkewS: 5,
        jwksCacheS: 300,
        claims: { subject: "sub", tenant: "tenant", scopes: "scope", roles: "roles" },
        realm: "umw-test",
      },
      healthy: ["query", "policy"],
    });
    port = Number(new URL(envoy.url).port);
    // jwt_authn fetches the JWKS after the listener starts: until then a valid token is 401.
    await waitFor(async () => ((await get("acme", "ready", acmeToken)).status === 200 ? true : undefined), { what: "a read through Envoy with a token", timeoutMs: 30_000, everyMs: 100, tolerateErrors: true });
  });

  after(async () => {
    await envoy?.stop();
    await queryServer?.stop();
    await policyServer?.stop();
    await oidc?.stop();
    certs?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const get = (tenant: string, id: string, token: string, extra: Record<string, string> = {}) =>
    fetch(`http://127.0.0.1:${port}/v1/tenants/${tenant}/types/todo/entities/${id}`, { headers: { authorization: `Bearer ${token}`, ...extra } });
  const bearer = (token: string, extra: Record<string, string> = {}) => ({ headers: { authorization: `Bearer ${token}`, ...extra } });
  const reasonOf = async (response: Response) => {
    const body = (await response.json()) as { code: number; details: Array<{ reason: string }> };
    return { code: body.code, reason: body.details[0]?.reason };
  };
  const expectCrossTenant = (error: unknown) => {
    assert.ok(error instanceof RpcError, String(error));
    assert.equal(Code[error.code], "PERMISSION_DENIED", error.message);
    assert.equal(error.reason, "CROSS_TENANT_ACCESS");
    return true;
  };

  test("REST: a read in the token's tenant passes; another tenant's path is 403 and never reaches the service", async () => {
    const allowed = await get("acme", "a1", acmeToken);
    assert.equal(allowed.status, 200, await allowed.clone().text());
    assert.equal(((await allowed.json()) as { entity: { id: string } }).entity.id, "a1");
    assert.ok(served.includes("acme/a1"));
    assert.equal(seen.at(-1)?.["x-umw-tenant"], "acme");
    assert.equal(seen.at(-1)?.["x-umw-principal"], ACME.id);

    // On a REST path the tenant is in the path, and the filter that sets the principal from the
    // token refuses a mismatch (TENANT_MISMATCH) before ext_authz is asked; gRPC below reaches it.
    const denied = await get("globex", "g1", acmeToken);
    assert.equal(denied.status, 403);
    assert.deepEqual(await reasonOf(denied), { code: Code.PERMISSION_DENIED, reason: "TENANT_MISMATCH" });
    assert.ok(!served.some((entry) => entry.startsWith("globex/")), "the denied read never reached QueryService");
  });

  test("REST: a token without the operation's scope is 403 MISSING_SCOPE", async () => {
    const denied = await get("acme", "a2", await oidc.clientToken(ACME, "entities:write"));
    assert.equal(denied.status, 403);
    assert.deepEqual(await reasonOf(denied), { code: Code.PERMISSION_DENIED, reason: "MISSING_SCOPE" });
    assert.ok(!served.includes("acme/a2"));
  });

  test("gRPC through Envoy: the tenant comes from the request message; the refusal is PERMISSION_DENIED with its ErrorInfo", async () => {
    const client = createClient(QueryService, `127.0.0.1:${port}`, grpcCredentials.createInsecure());
    try {
      const { entity } = await client.getEntity({ tenant: "acme", type: "todo", id: "a3" }, bearer(acmeToken));
      assert.equal(entity?.id, "a3");
      await assert.rejects(client.getEntity({ tenant: "globex", type: "todo", id: "g3" }, bearer(acmeToken)), expectCrossTenant);
      assert.ok(!served.includes("globex/g3"));
    } finally {
      client.close();
    }
  });

  test("client-sent x-umw-tenant/-principal/-scopes next to a valid token change nothing", async () => {
    // A REST read of the other tenant, claiming that tenant and every scope in headers.
    const rest = await get("globex", "g5", acmeToken, FORGED);
    assert.equal(rest.status, 403);
    assert.equal((await reasonOf(rest)).code, Code.PERMISSION_DENIED);
    // The same headers cannot add a scope the token lacks.
    const unscoped = await get("acme", "a5", await oidc.clientToken(ACME, "entities:write"), FORGED);
    assert.equal(unscoped.status, 403);
    assert.deepEqual(await reasonOf(unscoped), { code: Code.PERMISSION_DENIED, reason: "MISSING_SCOPE" });
    // gRPC metadata: the policy still sees the token's tenant, not the claimed one.
    const client = createClient(QueryService, `127.0.0.1:${port}`, grpcCredentials.createInsecure());
    try {
      await assert.rejects(client.getEntity({ tenant: "globex", type: "todo", id: "g6" }, bearer(acmeToken, FORGED)), expectCrossTenant);
      // A token of globex with headers claiming acme is still globex's.
      const globexToken = await oidc.clientToken(GLOBEX, "entities:read");
      await assert.rejects(client.getEntity({ tenant: "acme", type: "todo", id: "a6" }, bearer(globexToken, { ...FORGED, "x-umw-tenant": "acme", "x-umw-principal": ACME.id })), expectCrossTenant);
      // An allowed read arrives as the token's principal, without the client's headers.
      await client.getEntity({ tenant: "acme", type: "todo", id: "a7" }, bearer(acmeToken, FORGED));
      const headers = seen.at(-1)!;
      assert.equal(headers["x-umw-principal"], ACME.id);
      assert.equal(headers["x-umw-tenant"], "acme");
      assert.equal(headers["x-umw-scopes"], "entities:read");
      assert.equal(headers["x-umw-roles"], undefined);
    } finally {
      client.close();
    }
    assert.ok(!served.some((entry) => ["globex/g5", "acme/a5", "globex/g6", "acme/a6"].includes(entry)), served.join(", "));
  });

  test("with the policy service down, requests are refused (503), never let through", async () => {
    await policyServer.stop();
    const refused = await get("acme", "a4", acmeToken);
    assert.equal(refused.status, 503);
    assert.ok(!served.includes("acme/a4"));
  });
});
