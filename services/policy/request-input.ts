import type { DescMethod, Message } from "@bufbuild/protobuf";
import type { Principal } from "../../runtime/principal.js";
import type { PolicyInput } from "./authz-policy.js";

/** `umw.v1.QueryService/GetEntity`: the policy's name of a method. */
export const methodName = (method: DescMethod): string => `${method.parent.typeName}/${method.name}`;

/** The tenant a request targets: every umw.v1 request names one in its `tenant` field; others (Health, reflection) none. */
export function requestTenants(message: Message | undefined): string[] {
  const tenant = (message as { tenant?: unknown } | undefined)?.tenant;
  return typeof tenant === "string" ? [tenant] : [];
}

export function requestInput(method: string, message: Message | undefined, principal: Principal | undefined): PolicyInput {
  return { method, tenants: requestTenants(message), ...(principal ? { principal } : {}) };
}
