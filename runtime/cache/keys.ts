/**
 * Redis names of one entity: the entry `umw:{tenant}:{type}:{id}`, the loader's lease
 * `umw:lease:{tenant}:{type}:{id}` and the fill channel `umw:fill:{tenant}:{type}:{id}`, each behind
 * an optional prefix (test isolation, several deployments on one Redis). Tenants, types and ids
 * never contain ':' (checkName/checkType), so the names cannot collide.
 */
export interface CacheKey {
  /** `{tenant}:{type}:{id}`: the key of in-process maps (single-flight, L1). */
  readonly local: string;
  readonly entry: string;
  readonly lease: string;
  readonly channel: string;
}

export function cacheKey(prefix: string, tenant: string, type: string, id: string): CacheKey {
  const local = `${tenant}:${type}:${id}`;
  return { local, entry: `${prefix}umw:${local}`, lease: `${prefix}umw:lease:${local}`, channel: `${prefix}umw:fill:${local}` };
}
