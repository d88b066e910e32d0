/** What a tenant not on the allow-list (UMW_METRICS_TENANT_LABELS) is counted as. */
export const OTHER_TENANTS = "_other";

/**
 * The `tenant` label value of a request's tenant: its own name only when it is on the allow-list
 * (a fixed, operator-chosen set), every other tenant folded into `_other`, so requests naming
 * random tenants can never grow the number of series.
 */
export function tenantLabeler(allowList: readonly string[]): (tenant: string) => string {
  if (allowList.length === 0) return () => OTHER_TENANTS;
  const allowed = new Set(allowList);
  return (tenant) => (allowed.has(tenant) ? tenant : OTHER_TENANTS);
}
