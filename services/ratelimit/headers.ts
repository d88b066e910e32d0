import type { Decision, PolicyState } from "./limiter.js";

/**
 * Response headers of a rate-limit decision, per draft-ietf-httpapi-ratelimit-headers-09:
 * `RateLimit-Policy` lists every policy that applied (`"principal";q=200;w=2`: a quota of q
 * requests refilled over w seconds), `RateLimit` the state of the tightest one (`"principal";r=17;t=1`:
 * r requests left, t seconds until it is full again), and `Retry-After` (seconds) on a refusal.
 */
export function rateLimitHeaders(decision: Decision): Record<string, string> {
  if (decision.policies.length === 0) return decision.outcome === "unavailable" && !decision.allowed ? { "retry-after": "1" } : {};
  const tight = tightest(decision.policies);
  const headers: Record<string, string> = {
    "ratelimit-policy": decision.policies.map((policy) => `"${policy.policy}";q=${policy.quota};w=${policy.windowSeconds}`).join(", "),
    ratelimit: `"${tight.policy}";r=${tight.remaining};t=${Math.ceil(tight.resetMs / 1000)}`,
  };
  if (decision.outcome === "limited") headers["retry-after"] = String(Math.max(1, Math.ceil(decision.retryAfterMs / 1000)));
  return headers;
}

/** The policy that limits the request, or the one with the fewest requests left. */
export function tightest(policies: readonly PolicyState[]): PolicyState {
  return policies.reduce((a, b) => (b.retryAfterMs > a.retryAfterMs || (b.retryAfterMs === a.retryAfterMs && b.remaining < a.remaining) ? b : a));
}
