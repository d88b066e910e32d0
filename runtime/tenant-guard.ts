import type { CallContext } from "./call-context.js";
import { Code, RpcError } from "./errors.js";
import { principalOf } from "./principal.js";

/**
 * A user principal (from a trusted edge's verified token) acts only in its own tenant: a request
 * naming another is PERMISSION_DENIED / TENANT_MISMATCH. Service principals are not limited here.
 */
export function checkCallerTenant(ctx: Pick<CallContext, "headers" | "peer">, trustedPeers: ReadonlySet<string>, tenant: string): void {
  const principal = principalOf(ctx, trustedPeers);
  if (principal?.kind !== "user" || principal.tenant === undefined || principal.tenant === tenant) return;
  throw new RpcError(Code.PERMISSION_DENIED, "TENANT_MISMATCH", `the token grants tenant ${JSON.stringify(principal.tenant)}, not ${JSON.stringify(tenant)}`, {
    tenant,
    callerTenant: principal.tenant,
  });
}
