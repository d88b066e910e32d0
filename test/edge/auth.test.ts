// Authentication at the Node edge against a real OpenID Provider (oidc-provider on loopback, the
// client_credentials grant issuing JWT access tokens with a tenant claim): valid tokens work over
// REST, Connect and gRPC-web and reach the upstream as the principal's x-umw-* metadata (never the
// client's own x-umw-* headers, never the token itself); missing, garbage, expired, wrong-audience,
// wrong-issuer and unsigned tokens get 401 with an RFC 6750 challenge and an ErrorInfo; another
// tenant is 403; rotated signing keys are picked up, and a token of a key dropped from the JWKS
// stops verifying once the JWKS is fetched again (unless the edge already verified it: then it
// holds until its exp).
//
//   node --import tsx --test test/edge/auth.test.ts
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { QueryService } from "../../gen/umw/v1/query_pb.js";
import type { RunningEdge } from "../../services/edge/index.js";
import { TokenVerifier } from "../../services/edge/token-verifier.js";
import { bearer } from "../support/dev-tokens.js";
import { OIDC_AUDIENCE, OidcIssuer, unsignedToken, type OidcClient } from "../support/oidc-issuer.js";
import { startFixture, type Fixture } from "./fixtures.js";

const ACME: OidcClient = { id: "acme-app", secret: "acme-secret-0123456789", tenant: "acme" };
const GLOBEX: OidcClient = { id: "globex-app", secret: "globex-secret-0123456789", tenant: "globex" };
const JWKS_CACHE_MS = 1_000;

describe("Node edge: bearer tokens of a real OpenID Provider", { timeout: 60_000 }, () => {
  let oidc: OidcIssuer;
  let fx: Fixture;
  let edge: RunningEdge;

  before(async () => {
    oidc = await OidcIssuer.start([ACME, GLOBEX]);
    fx = await startFixture();
    const verifier = new TokenVerifier({
      issuer: oidc.issuer,
      audience: OIDC_AUDIENCE,
      algorithms: ["ES256", "RS256"],
      clockSkewS: 5,
      claims: { subject: "sub", tenant: "tenant", scopes: "scope", roles: "roles" },
      jwksCacheMs: JWKS_CACHE_MS,
      jwksCooldownMs: 0,
    });
    edge = await fx.startEdge({ auth: { mode: "bearer", verifier, realm: "umw-test" } });
  });

  after(async () => {
    await fx?.close();
    await oidc?.stop();
  });

  const get = (token: string | undefined, extra: Record<string, string> = {}, tenant = "acme") =>
    fetch(`${edge.url}/v1/tenants/${tenant}/types/todo/entities/e1`, { headers: { ...(token === undefined ? {} : { authorization: `Bearer ${token}` }), ...extra } });

  const expectUnauthenticated = async (response: Response, reason: string, error: string | undefined) => {
    const body = (await response.json()) as { code: number; details: { reason: string }[] };
    assert.equal(response.status, 401, JSON.stringify(body));
    assert.equal(body.code, 16);
    assert.equal(body.details.find((detail) => "reason" in detail)?.reason, reason);
    const challenge = response.headers.get("www-authenticate") ?? "";
    assert.match(challenge, /^Bearer realm="umw-test"/);
    if (error) assert.match(challenge, new RegExp(`error="${error}", error_description="[^"]+"`));
    else assert.doesNotMatch(challenge, /error=/);
  };

  test("a client_credentials token works; the upstream sees the token's principal, not the client's x-umw-* headers or the token", async () => {
    const token = await oidc.clientToken(ACME);
    const before = fx.calls.length;
    const response = await get(token, { "x-umw-principal": "root", "x-umw-tenant": "globex", "x-umw-scopes": "admin", "x-umw-token-expires-at": "99999999999999" });
    assert.equal(response.status, 200, await response.clone().text());
    assert.equal(fx.calls.length, before + 1);
    const { headers } = fx.last("GetEntity");
    assert.equal(headers["x-umw-principal"], ACME.id);
    assert.equal(headers["x-umw-tenant"], "acme");
    assert.deepEqual(headers["x-umw-scopes"]?.split(" ").sort(), ["commands:read", "entities:read", "entities:write", "realtime:subscribe"]);
    const expiresAt = Number(headers["x-umw-token-expires-at"]);
    assert.ok(expiresAt > Date.now() && expiresAt <= Date.now() + 601_000, `expiry ${expiresAt}`);
    assert.equal(headers.authorization, undefined, "the token itself stays at the edge");
  });

  test("a user's token (sub the user, client_id the app) works; the upstream sees the user as the principal", async () => {
    const response = await get(await oidc.userToken(ACME, "alice", "acme", "entities:read"));
    assert.equal(response.status, 200, await response.clone().text());
    const { headers } = fx.last("GetEntity");
    assert.equal(headers["x-umw-principal"], "alice");
    assert.equal(headers["x-umw-tenant"], "acme");
    assert.equal(headers["x-umw-scopes"], "entities:read");
    const otherTenant = await get(await oidc.userToken(ACME, "bob", "globex", "entities:read"));
    assert.equal(otherTenant.status, 403, "bob's token is globex's");
  });

  test("no token, garbage, a bogus bearer, expired, wrong audience, wrong issuer, alg none: 401 with WWW-Authenticate; the upstream is never called", async () => {
    const before = fx.calls.length;
    await expectUnauthenticated(await get(undefined), "TOKEN_MISSING", undefined);
    await expectUnauthenticated(await get(undefined, { authorization: "Basic YTpi" }), "TOKEN_INVALID", "invalid_request");
    await expectUnauthenticated(await get("not-a-token"), "TOKEN_INVALID", "invalid_token");
    const now = Math.floor(Date.now() / 1000);
    await expectUnauthenticated(await get(await oidc.forge({ exp: now - 60, iat: now - 660 })), "TOKEN_EXPIRED", "invalid_token");
    await expectUnauthenticated(await get(await oidc.forge({ aud: "https://other.test" })), "TOKEN_INVALID", "invalid_token");
    await expectUnauthenticated(await get(await oidc.forge({ iss: "https://evil.test" })), "TOKEN_INVALID", "invalid_token");
    await expectUnauthenticated(await get(unsignedToken({ iss: oidc.issuer, aud: OIDC_AUDIENCE, sub: "x", tenant: "acme", exp: now + 600 })), "TOKEN_INVALID", "invalid_token");
    // A valid token missing the tenant claim.
    await expectUnauthenticated(await get(await oidc.forge({ tenant: undefined })), "TOKEN_CLAIM_MISSING", "invalid_token");
    assert.equal(fx.calls.length, before, "no call went upstream");
  });

  test("a token of one tenant on another tenant's path is 403 TENANT_MISMATCH", async () => {
    const response = await get(await oidc.clientToken(GLOBEX), {}, "acme");
    const body = (await response.json()) as { details: { reason: string }[] };
    assert.equal(response.status, 403);
    assert.equal(body.details[0]?.reason, "TENANT_MISMATCH");
  });

  for (const [name, transport] of [
    ["Connect", (token?: string) => createConnectTransport({ baseUrl: edge.url, interceptors: token ? [bearer(token)] : [] })],
    ["gRPC-web", (token?: string) => createGrpcWebTransport({ baseUrl: edge.url, interceptors: token ? [bearer(token)] : [] })],
  ] as const) {
    test(`${name}: a token works; none or a bad one is unauthenticated with an ErrorInfo`, async () => {
      const ok = await createClient(QueryService, transport(await oidc.clientToken(ACME))).getEntity({ tenant: "acme", type: "todo", id: "e1" });
      assert.equal(ok.entity?.id, "e1");
      assert.equal(fx.last("GetEntity").headers["x-umw-principal"], ACME.id);
      for (const [token, reason] of [
        [undefined, "TOKEN_MISSING"],
        ["not-a-token", "TOKEN_INVALID"],
      ] as const) {
        const error = await createClient(QueryService, transport(token))
          .getEntity({ tenant: "acme", type: "todo", id: "e1" })
          .then(() => assert.fail("expected UNAUTHENTICATED"), (caught: unknown) => caught);
        assert.ok(error instanceof ConnectError, String(error));
        assert.equal(error.code, Code.Unauthenticated);
        assert.equal(error.findDetails(ErrorInfoSchema)[0]?.reason, reason);
        if (name === "Connect") assert.match(error.metadata.get("www-authenticate") ?? "", /^Bearer realm="umw-test"/);
      }
    });
  }

  test("key rotation: tokens of the new key verify at once; an old-key token verifies while its key is published, and not after it is dropped", async () => {
    const oldKid = oidc.currentKid;
    const oldToken = await oidc.clientToken(ACME);
    const oldUnseen = await oidc.clientToken(GLOBEX);
    assert.equal((await get(oldToken)).status, 200);

    await oidc.rotate();
    assert.notEqual(oidc.currentKid, oldKid);
    const newToken = await oidc.clientToken(ACME);
    assert.equal(JSON.parse(Buffer.from(newToken.split(".")[0]!, "base64url").toString()).kid, oidc.currentKid);
    // An unknown kid makes the edge fetch the JWKS again.
    assert.equal((await get(newToken)).status, 200);
    assert.equal((await get(oldUnseen, {}, "globex")).status, 200, "the old key is still published");

    // Signed with the key about to be dropped, and never shown to the edge.
    const unseen = await oidc.forge({ sub: "late", tenant: "globex" });
    await oidc.rotate({ dropOld: true });
    // Once the cached JWKS is stale, it is fetched again without the dropped keys: a token of theirs the edge has not verified yet is refused.
    await new Promise((resolve) => setTimeout(resolve, JWKS_CACHE_MS + 100));
    await expectUnauthenticated(await get(unseen, {}, "globex"), "TOKEN_INVALID", "invalid_token");
    assert.equal((await get(await oidc.clientToken(ACME))).status, 200, "the newest key verifies");
    // Documented: a token already verified is remembered until its exp, whatever happens to its key.
    assert.equal((await get(oldToken)).status, 200);
  });
});
