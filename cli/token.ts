import { parseArgs } from "node:util";
import { loadConfig } from "../runtime/config.js";
import { devIssuerUrl } from "../services/edge/auth-config.js";
import { DevIssuer } from "../services/edge/dev-issuer.js";

const DURATION = /^(\d+)(s|m|h|d)?$/;
const SECONDS = { s: 1, m: 60, h: 3600, d: 86_400 } as const;

/** `umw token`: prints a token of the built-in dev issuer (UMW_AUTH_MODE=dev) for the given tenant and scopes. */
export async function runToken(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      tenant: { type: "string" },
      scopes: { type: "string", default: "" },
      roles: { type: "string", default: "" },
      subject: { type: "string", default: "dev" },
      ttl: { type: "string", default: "1h" },
    },
  });
  const ttl = DURATION.exec(values.ttl);
  if (!values.tenant || !ttl) {
    console.error('usage: umw token --tenant T [--scopes "a b"] [--roles "r"] [--subject S] [--ttl 1h|30m|90s]');
    return 2;
  }
  const config = loadConfig();
  if (config.authMode !== "dev") console.error(`umw token: note: UMW_AUTH_MODE is ${config.authMode}; the edge accepts dev issuer tokens only with dev`);
  const issuer = await DevIssuer.open(config.authDevKeysDir, devIssuerUrl(config));
  const list = (value: string) => value.split(/[\s,]+/).filter(Boolean);
  const extra: Record<string, unknown> = { [config.authTenantClaim]: values.tenant, [config.authScopeClaim]: list(values.scopes).join(" ") };
  if (values.roles) extra[config.authRolesClaim] = list(values.roles);
  const ttlS = Number(ttl[1]) * SECONDS[(ttl[2] ?? "s") as keyof typeof SECONDS];
  console.log(await issuer.token({ subject: values.subject, audience: config.authAudience, ttlS, extra }));
  return 0;
}
