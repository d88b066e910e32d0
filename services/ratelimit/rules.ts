/** A token bucket: `rps` requests a second on average, up to `burst` at once. */
export interface BucketRule {
  readonly rps: number;
  readonly burst: number;
}

/**
 * The limits umw enforces at its edges (settings UMW_RATE_LIMIT_*, runtime/config.ts). Every
 * request is charged to all the buckets that apply to it, atomically: allowed only if each allows.
 */
export interface RateLimitRules {
  /** Per principal (tenant + subject), across its routes. */
  readonly principal: BucketRule;
  /** Per principal and route, replacing `principal` for that route (a route's own bucket). Keys: `umw.v1.CommandService/CreateEntity`. */
  readonly routes: Readonly<Record<string, BucketRule>>;
  /** Per principal, reads that bypass the cache (`min_version`), on top of the others. */
  readonly freshReads: BucketRule;
  /** Per tenant, every principal together: the tenant's quota. */
  readonly tenant: BucketRule;
  /** Per tenant overrides of `tenant`. */
  readonly tenants: Readonly<Record<string, BucketRule>>;
}

/** What a request is keyed by. `subject` is the principal's, or the client address until callers authenticate. */
export interface RateLimitSubject {
  /** The tenant the request acts in (the principal's, else the path's); undefined when unknown. */
  readonly tenant: string | undefined;
  readonly subject: string;
  /** The gRPC method, `umw.v1.QueryService/GetEntity`, whichever protocol it came in by. */
  readonly route: string;
  /** A read that bypasses the cache (min_version > 0). */
  readonly freshRead?: boolean;
}

/** One bucket a request is charged to: its IETF policy name, its Redis key (without prefix) and its rule. */
export interface Bucket {
  readonly policy: string;
  readonly key: string;
  readonly rule: BucketRule;
}

export const DEFAULT_RULES: RateLimitRules = {
  principal: { rps: 100, burst: 200 },
  routes: {},
  freshReads: { rps: 20, burst: 40 },
  tenant: { rps: 1_000, burst: 2_000 },
  tenants: {},
};

/** The buckets a request is charged to, most specific first. */
export function bucketsFor(rules: RateLimitRules, request: RateLimitSubject): Bucket[] {
  const tenant = request.tenant ?? "-";
  const who = `${escape(tenant)}:${escape(request.subject)}`;
  const routeRule = rules.routes[request.route];
  const buckets: Bucket[] = [
    routeRule
      ? { policy: "route", key: `route:${who}:${escape(request.route)}`, rule: routeRule }
      : { policy: "principal", key: `principal:${who}`, rule: rules.principal },
  ];
  if (request.freshRead) buckets.push({ policy: "fresh-read", key: `fresh:${who}`, rule: rules.freshReads });
  if (request.tenant !== undefined) buckets.push({ policy: "tenant", key: `tenant:${escape(tenant)}`, rule: rules.tenants[tenant] ?? rules.tenant });
  return buckets;
}

/** Keeps the parts of a key apart whatever they contain (a subject may hold `:`). */
function escape(part: string): string {
  return encodeURIComponent(part);
}
