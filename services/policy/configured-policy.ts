import type { Config } from "../../runtime/config.js";
import type { ServerInterceptor } from "../../runtime/interceptor.js";
import { AuthzPolicy, DEFAULT_POLICY_WASM, sharedAuthzPolicy } from "./authz-policy.js";
import { serverAuthorization } from "./authorization-interceptor.js";
import type { SubscriptionPolicy } from "../realtime/policy.js";
import { opaSubscriptionPolicy } from "./subscription-policy.js";

/** The process's policy, as the config names it (UMW_POLICY_WASM, else the committed one); undefined when authorization is off. */
export async function configuredPolicy(config: Pick<Config, "authorization" | "policyWasm">): Promise<AuthzPolicy | undefined> {
  if (config.authorization === "off") return undefined;
  return !config.policyWasm || config.policyWasm === DEFAULT_POLICY_WASM ? sharedAuthzPolicy() : AuthzPolicy.load(config.policyWasm);
}

/** The interceptors every mesh server of `umw serve` runs (runtime/service.ts): authorization, unless UMW_AUTHORIZATION=off. */
export async function policyInterceptors(config: Pick<Config, "authorization" | "policyWasm" | "trustedPrincipalPeers">): Promise<ServerInterceptor[]> {
  const policy = await configuredPolicy(config);
  return policy ? [serverAuthorization(policy, new Set(config.trustedPrincipalPeers))] : [];
}

/** The realtime hub's subscription policy under `umw serve`: OPA, unless UMW_AUTHORIZATION=off (then the hub's tenant isolation). */
export async function meshSubscriptionPolicy(config: Pick<Config, "authorization" | "policyWasm" | "trustedPrincipalPeers">): Promise<SubscriptionPolicy | undefined> {
  const policy = await configuredPolicy(config);
  return policy ? opaSubscriptionPolicy(policy, new Set(config.trustedPrincipalPeers)) : undefined;
}
