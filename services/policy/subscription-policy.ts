import { principalOf } from "../../runtime/principal.js";
import { tenantIsolation, type SubscriptionPolicy } from "../realtime/policy.js";
import type { AuthzPolicy, PolicyTopic } from "./authz-policy.js";
import { denial } from "./denial.js";

export const SUBSCRIBE_METHOD = "umw.v1.RealtimeService/Subscribe";

/**
 * The realtime hub's SubscriptionPolicy on OPA: every resolved topic goes to the policy (tenant,
 * scope per topic kind, own commands only); then the hub's own tenant isolation, which also holds a
 * mesh caller to the tenant it names in `x-umw-tenant`.
 */
export function opaSubscriptionPolicy(policy: AuthzPolicy, trustedPeers: ReadonlySet<string>): SubscriptionPolicy {
  return {
    authorize(caller, ask) {
      const principal = principalOf({ headers: caller.headers, peer: caller.peer }, trustedPeers);
      const topics: PolicyTopic[] = ask.topics.map((topic) =>
        topic.kind === "ownCommands" ? { kind: topic.kind, tenant: topic.tenant, principal: topic.principal } : { kind: topic.kind, tenant: topic.tenant },
      );
      const input = { method: SUBSCRIBE_METHOD, tenants: [ask.tenant], topics, ...(principal ? { principal } : {}) };
      const decision = policy.decide(input);
      if (!decision.allow) throw denial(decision.reason, input);
      return tenantIsolation.authorize(caller, ask);
    },
  };
}
