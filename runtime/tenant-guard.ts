import type { CallContext } from "./call-context.js";
import { Code, RpcError } from "./errors.js";
import { principalOf } from "./principal.js";

/**
 * Defence in depth behind the authorization interceptor: a user principal acts only in the tenant
 * its token grants, whatever the policy in front said. Service principals are the mesh table's
 * business and pass.
 */
export function checkTenantOfPrincipal(ctx: Pick<CallContext, "headers" | "peer">, tenant: string, trustedPeers: ReadonlySet<string>): void {
  const principal = principalOf(ctx, trustedPeers);
  if (principal?.kind !== "user" || principal.tenant === tenant) return;
  throw new RpcError(Code.PERMISSION_DENIED, "CROSS_TENANT_ACCESS", `${JSON.stringify(principal.subject)} may not act in tenant ${JSON.stringify(tenant)}`, {
    tenants: tenant,
    ...(principal.tenant ? { callerTenant: principal.tenant } : {}),
  });
}
