import { Code, RpcError } from "../../runtime/errors.js";
import { isReason, REASONS } from "../../runtime/reasons.js";
import type { PolicyInput } from "./authz-policy.js";

/**
 * The status of a refused call: UNAUTHENTICATED when the method needs a principal and the call has
 * none, otherwise PERMISSION_DENIED, with the policy's reason as ErrorInfo.
 */
export function denial(reason: string, input: PolicyInput): RpcError {
  const known = isReason(reason) ? reason : "PERMISSION_DENIED";
  const code = REASONS[known].codes[0] === Code.UNAUTHENTICATED ? Code.UNAUTHENTICATED : Code.PERMISSION_DENIED;
  const who = input.principal ? `${input.principal.kind} ${JSON.stringify(input.principal.subject)}` : "a call without a principal";
  return new RpcError(code, known, `${who} may not call ${input.method}${input.tenants.length ? ` in tenant ${input.tenants.join(", ")}` : ""}: ${known}`, {
    method: input.method,
    tenants: input.tenants.join(","),
    ...(input.principal?.tenant ? { callerTenant: input.principal.tenant } : {}),
  });
}
