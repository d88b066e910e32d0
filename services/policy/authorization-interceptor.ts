import type { ServerInterceptor } from "../../runtime/interceptor.js";
import { principalOf } from "../../runtime/principal.js";
import type { AuthzPolicy } from "./authz-policy.js";
import { denial } from "./denial.js";
import { methodName, requestInput } from "./request-input.js";

/**
 * Server: asks the policy before every call (unary and streaming alike) whether the call's principal
 * may call this method in the tenant its request names (and, for Subscribe, on the topics it names);
 * a refusal never reaches the handler. The realtime hub decides the resolved topics again
 * (opaSubscriptionPolicy).
 */
export function serverAuthorization(policy: AuthzPolicy, trustedPeers: ReadonlySet<string>): ServerInterceptor {
  return (next) => (req) => {
    const input = requestInput(methodName(req.method), req.message, principalOf(req.context, trustedPeers));
    const decision = policy.decide(input);
    if (!decision.allow) throw denial(decision.reason, input);
    return next(req);
  };
}
