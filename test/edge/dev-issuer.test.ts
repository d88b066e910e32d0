// The zero-setup authentication of `npm start` (UMW_AUTH_MODE=dev): `umw token` mints a token with
// the dev issuer's key, the edge built from the same settings accepts it, serves the issuer's OIDC
// discovery document and JWKS (which verify the token on their own), and refuses the token once it
// expires, or for another tenant; `none` is explicit and warns. A ttl or tenant missing is a usage error.
//
//   node --import tsx --test test/edge/dev-issuer.test.ts
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRemoteJWKSet, jwtVerify } from "jose";
import { pino } from "pino";
import { loadConfig } from "../../runtime/config.js";
import { edgeAuthFromConfig } from "../../services/edge/auth-config.js";
import type { RunningEdge } from "../../services/edge/index.js";
import { freePort } from "../support/ports.js";
import { startFixture, type Fixture } from "./fixtures.js";

describe("dev issuer: umw token and the edge of UMW_AUTH_MODE=dev", { timeout: 60_000 }, () => {
  let dir: string;
  let env: Record<string, string>;
  let fx: Fixture;
  let edge: RunningEdge;

  // Asynchronous: the edge under test runs in this process and must keep serving meanwhile.
  const token = (args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, ["bin/umw.mjs", "token", ...args], { env: { ...process.env, ...env }, timeout: 60_000 }, (error, stdout, stderr) =>
        resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout: stdout.trim(), stderr }),
      );
    });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "umw-dev-issuer-"));
    const port = await freePort();
    env = { UMW_AUTH_MODE: "dev", UMW_AUTH_CLOCK_SKEW_S: "0", UMW_AUTH_DEV_KEYS_DIR: join(dir, "keys"), UMW_EDGE_PORT: String(port), UMW_HOST: "127.0.0.1" };
    fx = await startFixture();
    const { auth, documents } = await edgeAuthFromConfig(loadConfig(env), pino({ level: "silent" }));
    edge = await fx.startEdge({ port, auth, documents });
  });

  after(async () => {
    await fx?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const get = (authorization: string | undefined, tenant = "acme") =>
    fetch(`${edge.url}/v1/tenants/${tenant}/types/todo/entities/e1`, { headers: authorization ? { authorization } : {} }).catch((error: Error) => {
      throw new Error(`${error.message}: ${String((error as { cause?: unknown }).cause)}`);
    });

  test("a token from `umw token` works; its subject, tenant and scopes reach the upstream", async () => {
    const minted = await token(["--tenant", "acme", "--scopes", "entities:read entities:write", "--subject", "alice", "--ttl", "10m"]);
    assert.equal(minted.code, 0, minted.stderr);
    assert.match(minted.stdout, /^[\w-]+\.[\w-]+\.[\w-]+$/);
    assert.equal((statSync(join(dir, "keys", "signing-key.jwk.json")).mode & 0o777).toString(8), "600", "the key is its owner's alone");
    const response = await get(`Bearer ${minted.stdout}`);
    assert.equal(response.status, 200, await response.clone().text());
    const { headers } = fx.last("GetEntity");
    assert.equal(headers["x-umw-principal"], "alice");
    assert.equal(headers["x-umw-tenant"], "acme");
    assert.equal(headers["x-umw-scopes"], "entities:read entities:write");
    assert.equal((await get(`Bearer ${minted.stdout}`, "globex")).status, 403);
    assert.equal((await get(undefined)).status, 401);
  });

  test("the edge serves the issuer's discovery document and JWKS, which verify its tokens", async () => {
    const discovery = (await (await fetch(`${edge.url}/.well-known/openid-configuration`)).json()) as { issuer: string; jwks_uri: string };
    assert.equal(discovery.issuer, `http://127.0.0.1:${edge.port}`);
    const minted = await token(["--tenant", "acme"]);
    const { payload } = await jwtVerify(minted.stdout, createRemoteJWKSet(new URL(discovery.jwks_uri)), { issuer: discovery.issuer, audience: "umw" });
    assert.equal(payload.tenant, "acme");
    const jwks = (await (await fetch(discovery.jwks_uri)).json()) as { keys: Record<string, unknown>[] };
    assert.equal(jwks.keys.length, 1);
    assert.equal(jwks.keys[0]!.d, undefined, "no private part is published");
  });

  test("a token is refused once it expires", async () => {
    const minted = await token(["--tenant", "acme", "--ttl", "4s"]);
    assert.equal((await get(`Bearer ${minted.stdout}`)).status, 200);
    const deadline = Date.now() + 10_000;
    let status = 200;
    while (status === 200 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      status = (await get(`Bearer ${minted.stdout}`)).status;
    }
    // UMW_AUTH_CLOCK_SKEW_S=0 here; by default a token is accepted up to 30 s past its exp (clock skew).
    assert.equal(status, 401, "refused after its exp, the verified-token cache included");
  });

  test("usage errors, and the warning of mode none", async () => {
    assert.equal((await token([])).code, 2);
    assert.equal((await token(["--tenant", "acme", "--ttl", "soon"])).code, 2);
    const lines: string[] = [];
    const log = pino({ level: "warn" }, { write: (line: string) => void lines.push(line) });
    const { auth } = await edgeAuthFromConfig(loadConfig({ UMW_AUTH_MODE: "none" }), log);
    assert.equal(auth.mode, "none");
    assert.match(lines.join(""), /authentication is OFF/);
  });
});
