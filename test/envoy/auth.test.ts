// Authentication at Envoy (jwt_authn, services/control-plane/jwt-authn.ts) against a real OpenID
// Provider (oidc-provider on loopback): the static configuration `umw envoy-config` renders with
// --auth-issuer, real Envoy in front of a recording QueryService over mTLS. A valid token reaches
// the service as the principal's x-umw-* metadata (client-sent x-umw-* headers are dropped first);
// missing, garbage, expired, wrong-audience, wrong-issuer and unsigned tokens are 401 with
// WWW-Authenticate and a google.rpc.Status body; a token of another tenant is 403 on its REST path;
// after the provider rotates its signing key, new tokens verify once Envoy refetches the JWKS.
//
//   node --import tsx --test test/envoy/auth.test.ts
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { QueryService, type GetEntityRequest } from "../../gen/umw/v1/query_pb.js";
import type { CallContext } from "../../runtime/call-context.js";
import { MeshServer } from "../../runtime/server.js";
import { serverCredentials } from "../../runtime/tls.js";
import { testCerts, type TestCerts } from "../support/certs.js";
import { OIDC_AUDIENCE, OidcIssuer, unsignedToken, type OidcClient } from "../support/oidc-issuer.js";
import { waitFor } from "../support/wait.js";
import { requireEnvoy, startPolicyServer, startStaticEnvoy, type StaticEnvoy } from "./support.js";

const ACME: OidcClient = { id: "acme-app", secret: "acme-secret-0123456789", tenant: "acme" };
const GLOBEX: OidcClient = { id: "globex-app", secret: "globex-secret-0123456789", tenant: "globex" };
const JWKS_CACHE_S = 2;

describe("Envoy: jwt_authn against a real OpenID Provider", { timeout: 120_000 }, () => {
  let oidc: OidcIssuer;
  let certs: TestCerts;
  let dir: string;
  let query: MeshServer;
  let policy: Awaited<ReturnType<typeof startPolicyServer>>;
  let envoy: StaticEnvoy;
  let edgePort: number;
  const seen: Record<string, string>[] = [];

  before(async () => {
    requireEnvoy();
    oidc = await OidcIssuer.start([ACME, GLOBEX]);
    certs = testCerts(["query", "policy", "envoy"]);
    policy = await startPolicyServer(certs.identity("policy"));
    query = new MeshServer({ name: "query", host: "127.0.0.1", port: 0, credentials: serverCredentials(certs.identity("query")), log: pino({ level: "silent" }), drainTimeoutMs: 200 });
    query.addService(QueryService, {
      async getEntity(request: GetEntityRequest, ctx: CallContext) {
        seen.push({ ...ctx.headers });
        return { entity: { tenant: request.tenant, type: request.type, id: request.id, version: 1n, data: {} } };
      },
      async batchGetEntities() {
        return {};
      },
      async listEntities() {
        return {};
      },
    } as never);
    const queryPort = await query.start();
    const jwksUri = ((await (await fetch(`${oidc.issuer}/.well-known/openid-configuration`)).json()) as { jwks_uri: string }).jwks_uri;
    dir = mkdtempSync(join(tmpdir(), "umw-envoy-auth-"));
    envoy = await startStaticEnvoy({
      dir,
      title: "test",
      certsDir: certs.dir,
      corsOrigins: ["*"],
      upstreams: { query: { host: "127.0.0.1", port: queryPort }, policy: { host: "127.0.0.1", port: policy.port } },
      auth: {
        issuer: oidc.issuer,
        audience: OIDC_AUDIENCE,
        jwks: { uri: jwksUri },
        clockSkewS: 5,
        jwksCacheS: JWKS_CACHE_S,
        claims: { subject: "sub", tenant: "tenant", scopes: "scope", roles: "roles" },
        realm: "umw-test",
      },
    });
    edgePort = Number(new URL(envoy.url).port);
    const token = await oidc.clientToken(ACME);
    await waitFor(async () => ((await get(token)).status === 200 ? true : undefined), { what: "a read through Envoy", timeoutMs: 30_000, tolerateErrors: true });
  });

  after(async () => {
    await envoy?.stop();
    await query?.stop();
    await policy?.stop();
    await oidc?.stop();
    certs?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const get = (token: string | undefined, extra: Record<string, string> = {}, tenant = "acme") =>
    fetch(`http://127.0.0.1:${edgePort}/v1/tenants/${tenant}/types/todo/entities/e1`, { headers: { ...(token === undefined ? {} : { authorization: `Bearer ${token}` }), ...extra } });

  const expect401 = async (response: Response, reason: string) => {
    const text = await response.text();
    assert.equal(response.status, 401, `${text} ${JSON.stringify([...response.headers])}`);
    assert.match(response.headers.get("www-authenticate") ?? "", /^Bearer realm="umw-test"/);
    const body = JSON.parse(text) as { code: number; details: { reason: string }[] };
    assert.equal(body.code, 16);
    assert.equal(body.details[0]?.reason, reason);
  };

  test("a valid token reaches the service as the token's principal; client-sent x-umw-* headers are dropped", async () => {
    const response = await get(await oidc.clientToken(ACME), { "x-umw-principal": "root", "x-umw-tenant": "globex", "x-umw-roles": "admin" });
    assert.equal(response.status, 200, await response.clone().text());
    const headers = seen.at(-1)!;
    assert.equal(headers["x-umw-principal"], ACME.id);
    assert.equal(headers["x-umw-tenant"], "acme");
    assert.equal(headers["x-umw-roles"], undefined);
    assert.match(headers["x-umw-scopes"] ?? "", /entities:read/);
    const expiresAt = Number(headers["x-umw-token-expires-at"]);
    assert.ok(expiresAt > Date.now() && expiresAt <= Date.now() + 601_000, `expiry in ms: ${headers["x-umw-token-expires-at"]}`);
    assert.equal(headers.authorization, undefined, "the token is not forwarded");
  });

  test("a user's token (sub the user, client_id the app) reaches the service as the user", async () => {
    const response = await get(await oidc.userToken(ACME, "alice", "acme", "entities:read"));
    assert.equal(response.status, 200, await response.clone().text());
    const headers = seen.at(-1)!;
    assert.equal(headers["x-umw-principal"], "alice");
    assert.equal(headers["x-umw-tenant"], "acme");
    assert.equal(headers["x-umw-scopes"], "entities:read");
  });

  test("missing, garbage, expired, wrong audience, wrong issuer, alg none: 401 with WWW-Authenticate; nothing reaches the service", async () => {
    const before = seen.length;
    await expect401(await get(undefined), "TOKEN_MISSING");
    await expect401(await get(undefined, { "x-umw-principal": "root", "x-umw-tenant": "acme" }), "TOKEN_MISSING");
    await expect401(await get("not-a-token"), "TOKEN_INVALID");
    const now = Math.floor(Date.now() / 1000);
    await expect401(await get(await oidc.forge({ exp: now - 60, iat: now - 660 })), "TOKEN_EXPIRED");
    await expect401(await get(await oidc.forge({ aud: "https://other.test" })), "TOKEN_INVALID");
    await expect401(await get(await oidc.forge({ iss: "https://evil.test" })), "TOKEN_INVALID");
    await expect401(await get(unsignedToken({ iss: oidc.issuer, aud: OIDC_AUDIENCE, sub: "x", tenant: "acme", exp: now + 600 })), "TOKEN_INVALID");
    assert.equal(seen.length, before);
  });

  test("a token of another tenant on its REST path is 403 TENANT_MISMATCH", async () => {
    const response = await get(await oidc.clientToken(GLOBEX), {}, "acme");
    const body = (await response.json()) as { details: { reason: string }[] };
    assert.equal(response.status, 403);
    assert.equal(body.details[0]?.reason, "TENANT_MISMATCH");
  });

  test("key rotation: a token of the new key verifies once Envoy refetches the JWKS; the old key's still does while published", async () => {
    const oldToken = await oidc.clientToken(ACME);
    await oidc.rotate();
    const newToken = await oidc.clientToken(ACME);
    // Envoy refetches the JWKS when its cache duration ends (an unknown kid does not refetch at once).
    await waitFor(async () => ((await get(newToken)).status === 200 ? true : undefined), { what: "the new key's token verifies", timeoutMs: (JWKS_CACHE_S + 5) * 1000, tolerateErrors: true });
    assert.equal((await get(oldToken)).status, 200);
    await oidc.rotate({ dropOld: true });
    await waitFor(async () => ((await get(oldToken)).status === 401 ? true : undefined), { what: "the dropped key's token is refused", timeoutMs: (JWKS_CACHE_S + 5) * 1000, tolerateErrors: true });
  });
});
