// The auth-on leg of bench:read: the settings a `umw serve` deployment with the built-in dev issuer
// runs with (UMW_AUTH_MODE=dev at the edge, UMW_AUTHORIZATION=opa and the built-in mesh table in
// the QueryService), and tokens of that issuer as `umw token` signs them.
import { loadConfig, type Config } from "../../runtime/config.js";
import { devIssuerUrl } from "../../services/edge/auth-config.js";
import { DevIssuer } from "../../services/edge/dev-issuer.js";

/** The `iss` of the bench's dev issuer (nothing is fetched from it: the dev issuer's keys are local). */
const BENCH_ISSUER = "https://issuer.bench.invalid";

/** The config of an auth-on process: the environment's settings, with authentication (the dev issuer's key in `devKeysDir`) and authorization on. */
export function authOnConfig(devKeysDir?: string): Config {
  return loadConfig({
    ...process.env,
    UMW_CONFIG: "",
    UMW_AUTH_MODE: "dev",
    ...(devKeysDir ? { UMW_AUTH_DEV_KEYS_DIR: devKeysDir } : {}),
    UMW_AUTH_ISSUER: BENCH_ISSUER,
    UMW_AUTHORIZATION: "opa",
  });
}

/** A bearer token of the bench's dev issuer in `devKeysDir` (made there on first use), as `umw token` makes one. */
export async function benchToken(devKeysDir: string, tenant: string, scopes: readonly string[], ttlS = 3600): Promise<string> {
  const config = authOnConfig(devKeysDir);
  const issuer = await DevIssuer.open(config.authDevKeysDir, devIssuerUrl(config));
  const extra = { [config.authTenantClaim]: tenant, [config.authScopeClaim]: scopes.join(" ") };
  return issuer.token({ subject: `bench-${tenant}`, audience: config.authAudience, ttlS, extra });
}
