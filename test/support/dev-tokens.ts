import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Interceptor } from "@connectrpc/connect";
import type { EdgeAuth } from "../../services/edge/authenticator.js";
import { DEV_ALGORITHM, DevIssuer } from "../../services/edge/dev-issuer.js";
import { TokenVerifier } from "../../services/edge/token-verifier.js";

export const TEST_AUDIENCE = "umw";
export const ALL_SCOPES = "entities:read entities:write commands:read realtime:subscribe";

/**
 * A dev issuer in a temp folder for tests that call an edge: the edge's EdgeAuth verifying its
 * tokens, and tokens for any tenant / subject / lifetime. `close()` removes the folder.
 */
export class TestIssuer {
  private constructor(
    private readonly dir: string,
    readonly issuer: DevIssuer,
  ) {}

  static async create(issuer = "https://issuer.test"): Promise<TestIssuer> {
    const dir = mkdtempSync(join(tmpdir(), "umw-issuer-"));
    return new TestIssuer(dir, await DevIssuer.open(dir, issuer));
  }

  /** The edge's auth: this issuer's keys, the test audience, the default claims. */
  auth(options: { cacheEntries?: number } = {}): EdgeAuth {
    const verifier = new TokenVerifier({
      issuer: this.issuer.issuer,
      audience: TEST_AUDIENCE,
      algorithms: [DEV_ALGORITHM],
      clockSkewS: 0,
      claims: { subject: "sub", tenant: "tenant", scopes: "scope", roles: "roles" },
      jwks: this.issuer.jwks,
      cacheEntries: options.cacheEntries,
    });
    return { mode: "bearer", verifier, realm: "umw" };
  }

  token(tenant: string, options: { subject?: string; ttlS?: number; scopes?: string; audience?: string } = {}): Promise<string> {
    return this.issuer.token({
      subject: options.subject ?? "tester",
      audience: options.audience ?? TEST_AUDIENCE,
      ttlS: options.ttlS ?? 3600,
      extra: { tenant, scope: options.scopes ?? ALL_SCOPES },
    });
  }

  close(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A Connect interceptor sending `Authorization: Bearer <token>`. */
export const bearer =
  (token: string): Interceptor =>
  (next) =>
  (request) => {
    request.header.set("authorization", `Bearer ${token}`);
    return next(request);
  };
