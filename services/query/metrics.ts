import { counter, defaultRegistry, gauge, histogram, LATENCY_BUCKETS, type Counter, type Gauge, type Histogram, type Registry } from "../../runtime/metrics.js";
import { OTHER_TENANTS } from "../../runtime/metric-labels.js";

type ByType = "tenant" | "type";

/**
 * The query service's Prometheus metrics, by tenant and type. The type label comes from the
 * resource catalog (a request for an unknown type is refused before it is counted); the tenant
 * label from `tenantLabel`, which by default folds every tenant into `_other` (see
 * UMW_METRICS_TENANT_LABELS), so the number of series never depends on what requests name.
 */
export class QueryMetrics {
  /** Answers from the cache; layer = l1 | redis. */
  readonly hits: Counter<ByType | "layer">;
  /** Requests that went to the backend themselves (one per load they led). */
  readonly misses: Counter<ByType>;
  /** Requests answered by another request's load: in this process or another instance's. */
  readonly collapsed: Counter<ByType>;
  /** Stale copies served because the backend failed; reason = backend-unavailable | backend-timeout | backend-error. */
  readonly staleServed: Counter<ByType | "reason">;
  /** Cached NOT_FOUND answers. */
  readonly negativeHits: Counter<ByType>;
  /** XFetch background refreshes started. */
  readonly earlyRefreshes: Counter<ByType>;
  /** Loaded values the versioned set refused (a newer version or an invalidation was there first). */
  readonly fenced: Counter<ByType>;
  /** Cache (Redis) operations that failed; reads then went to the backend. */
  readonly cacheErrors: Counter<"op">;
  /** Backend calls; op = get | batchGet | list; outcome = found | not_found | error. */
  readonly backendLatency: Histogram<ByType | "backend" | "op" | "outcome">;
  /** Reads waiting for a load right now (the loader's caller and its collapsed waiters). */
  readonly waiting: Gauge<ByType>;

  constructor(
    readonly registry: Registry = defaultRegistry,
    private readonly tenantLabel: (tenant: string) => string = () => OTHER_TENANTS,
  ) {
    const byType: ByType[] = ["tenant", "type"];
    this.hits = counter(registry, { name: "umw_query_cache_hits_total", help: "Reads answered from the cache.", labelNames: [...byType, "layer"] });
    this.misses = counter(registry, { name: "umw_query_cache_misses_total", help: "Reads that loaded from the backend.", labelNames: byType });
    this.collapsed = counter(registry, { name: "umw_query_cache_collapsed_total", help: "Reads answered by another read's load (coalesced waiters).", labelNames: byType });
    this.staleServed = counter(registry, { name: "umw_query_cache_stale_served_total", help: "Stale entries served because the backend failed.", labelNames: [...byType, "reason"] });
    this.negativeHits = counter(registry, { name: "umw_query_cache_negative_hits_total", help: "Cached NOT_FOUND answers.", labelNames: byType });
    this.earlyRefreshes = counter(registry, { name: "umw_query_cache_early_refreshes_total", help: "Probabilistic early (XFetch) background refreshes.", labelNames: byType });
    this.fenced = counter(registry, { name: "umw_query_cache_fenced_total", help: "Loaded values refused by the versioned set.", labelNames: byType });
    this.cacheErrors = counter(registry, { name: "umw_query_cache_errors_total", help: "Cache operations that failed (reads degraded to the backend).", labelNames: ["op"] });
    this.waiting = gauge(registry, { name: "umw_query_cache_waiting", help: "Reads currently waiting for a load (leader and collapsed waiters).", labelNames: byType });
    this.backendLatency = histogram(registry, {
      name: "umw_query_backend_duration_seconds",
      help: "Backend call latency.",
      labelNames: [...byType, "backend", "op", "outcome"],
      buckets: LATENCY_BUCKETS,
    });
  }

  /**
   * Every series of these types exists from the start at 0 (for each allow-listed tenant and
   * `_other`), so rates, ratios and alerts see a zero instead of no data before the first event.
   */
  declare(types: readonly string[], tenants: readonly string[] = []): void {
    for (const type of types) {
      for (const tenant of [...tenants, OTHER_TENANTS]) {
        const labels = { tenant, type };
        for (const layer of ["l1", "redis"]) this.hits.inc({ ...labels, layer }, 0);
        for (const metric of [this.misses, this.collapsed, this.negativeHits, this.earlyRefreshes, this.fenced]) metric.inc(labels, 0);
        for (const reason of ["backend-unavailable", "backend-timeout", "backend-error"]) this.staleServed.inc({ ...labels, reason }, 0);
      }
    }
    for (const op of ["get", "getMany", "lease", "watch", "complete"]) this.cacheErrors.inc({ op }, 0);
  }

  /** The labels of a read of `type` by `tenant`, bounded. */
  labelsOf(tenant: string, type: string): { tenant: string; type: string } {
    return { tenant: this.tenantLabel(tenant), type };
  }
}
