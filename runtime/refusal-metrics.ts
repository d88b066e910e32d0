import { counter, defaultRegistry, type Registry } from "./metrics.js";

/**
 * The counters of refused requests, declared once for whoever refuses (rate limiting, policy):
 * call these instead of declaring metrics of your own. Label values must come from a fixed set:
 * a route template (never a raw path), an ErrorInfo reason from runtime/reasons.ts.
 */
function rateLimitRefusals(registry: Registry) {
  return counter<"route">(registry, {
    name: "umw_ratelimit_refusals_total",
    help: "Requests refused by rate limiting (RESOURCE_EXHAUSTED / 429), by route template or RPC method.",
    labelNames: ["route"],
  });
}

function policyDenials(registry: Registry) {
  return counter<"reason">(registry, {
    name: "umw_policy_denials_total",
    help: "Requests refused by authorization policy (PERMISSION_DENIED / 403), by ErrorInfo reason.",
    labelNames: ["reason"],
  });
}

/** One request refused by rate limiting on `route` (a template such as `/v1/tenants/{tenant}/...` or `/umw.v1.QueryService/GetEntity`). */
export function countRateLimitRefusal(route: string, registry: Registry = defaultRegistry): void {
  rateLimitRefusals(registry).inc({ route });
}

/** One request refused by policy, with the ErrorInfo reason it was refused with. */
export function countPolicyDenial(reason: string, registry: Registry = defaultRegistry): void {
  policyDenials(registry).inc({ reason });
}

/** Declares both counters (at 0) so dashboards and alerts find them before the first refusal. */
export function declareRefusalMetrics(registry: Registry = defaultRegistry): void {
  rateLimitRefusals(registry);
  policyDenials(registry);
}
