import type { Config } from "../../runtime/config.js";
import { ConfigError } from "../../runtime/config.js";
import type { Logger } from "../../runtime/logger.js";
import type { EdgeAuth } from "./authenticator.js";
import { DEV_ALGORITHM, DevIssuer } from "./dev-issuer.js";
import { TokenVerifier } from "./token-verifier.js";

/** The dev issuer's `iss` when UMW_AUTH_ISSUER is unset: the Node edge that serves its keys. */
export function devIssuerUrl(config: Config): string {
  if (config.authIssuer) return config.authIssuer;
  const host = config.host === "0.0.0.0" ? "127.0.0.1" : config.host;
  return `http://${host.includes(":") ? `[${host}]` : host}:${config.edgePort}`;
}

/**
 * The edge's authentication from the settings: `oidc` (UMW_AUTH_ISSUER's keys), `dev` (the
 * built-in issuer, whose documents the edge serves), or `none` (warned about at every start).
 */
export async function edgeAuthFromConfig(config: Config, log: Logger): Promise<{ auth: EdgeAuth; documents: Record<string, unknown> }> {
  const claims = { subject: config.authSubjectClaim, tenant: config.authTenantClaim, scopes: config.authScopeClaim, roles: config.authRolesClaim };
  const common = { audience: config.authAudience, clockSkewS: config.authClockSkewS, claims, cacheEntries: config.authCacheEntries, jwksCacheMs: config.authJwksCacheS * 1000 };
  switch (config.authMode) {
    case "none":
      log.warn("UMW_AUTH_MODE=none: authentication is OFF; every caller is let in without a principal. Never run this way outside a closed test setup.");
      return { auth: { mode: "none" }, documents: {} };
    case "dev": {
      const issuer = await DevIssuer.open(config.authDevKeysDir, devIssuerUrl(config));
      log.warn({ issuer: issuer.issuer, keys: config.authDevKeysDir }, "UMW_AUTH_MODE=dev: the built-in dev issuer signs tokens (`umw token`); anyone who can read its key folder can mint tokens. Use oidc in production.");
      const verifier = new TokenVerifier({ ...common, issuer: issuer.issuer, algorithms: [DEV_ALGORITHM], jwks: issuer.jwks });
      return { auth: { mode: "bearer", verifier, realm: config.authRealm }, documents: issuer.documents() };
    }
    case "oidc": {
      if (!config.authIssuer) throw new ConfigError("invalid configuration: UMW_AUTH_MODE=oidc needs UMW_AUTH_ISSUER");
      const verifier = new TokenVerifier({ ...common, issuer: config.authIssuer, algorithms: config.authAlgorithms, jwksUrl: config.authJwksUrl });
      log.info({ issuer: config.authIssuer, audience: config.authAudience }, "edge verifies bearer tokens of the issuer");
      return { auth: { mode: "bearer", verifier, realm: config.authRealm }, documents: {} };
    }
  }
}
