import { defaultRegistry, LATENCY_BUCKETS, type Counter, type Gauge, type Histogram, type Registry } from "../../runtime/metrics.js";

/** The query service's Prometheus metrics, by tenant and type. */
export class QueryMetrics {
  /** Answers from the cache; layer = l1 | redis. */
  readonly hits: Counter;
  /** Requests that went to the backend themselves (one per load they led). */
  readonly misses: Counter;
  /** Requests answered by another request's load: in this process or another instance's. */
  readonly collapsed: Counter;
  /** Stale copies served because the backend failed; reason = backend-unavailable | backend-timeout | backend-error. */
  readonly staleServed: Counter;
  /** Cached NOT_FOUND answers. */
  readonly negativeHits: Counter;
  /** XFetch background refreshes started. */
  readonly earlyRefreshes: Counter;
  /** Loaded values the versioned set refused (a newer version or an invalidation was there first). */
  readonly fenced: Counter;
  /** Cache (Redis) operations that failed; reads then went to the backend. */
  readonly cacheErrors: Counter;
  /** Backend calls; op = get | batchGet | list; outcome = found | not_found | error. */
  readonly backendLatency: Histogram;
  /** Reads waiting for a load right now (the loader's caller and its collapsed waiters). */
  readonly waiting: Gauge;

  constructor(readonly registry: Registry = defaultRegistry) {
    const byType = ["tenant", "type"];
    this.hits = registry.counter({ name: "umw_query_cache_hits_total", help: "Reads answered from the cache.", labelNames: [...byType, "layer"] });
    this.misses = registry.counter({ name: "umw_query_cache_misses_total", help: "Reads that loaded from the backend.", labelNames: byType });
    this.collapsed = registry.counter({ name: "umw_query_cache_collapsed_total", help: "Reads answered by another read's load (coalesced waiters).", labelNames: byType });
    this.staleServed = registry.counter({ name: "umw_query_cache_stale_served_total", help: "Stale entries served because the backend failed.", labelNames: [...byType, "reason"] });
    this.negativeHits = registry.counter({ name: "umw_query_cache_negative_hits_total", help: "Cached NOT_FOUND answers.", labelNames: byType });
    this.earlyRefreshes = registry.counter({ name: "umw_query_cache_early_refreshes_total", help: "Probabilistic early (XFetch) background refreshes.", labelNames: byType });
    this.fenced = registry.counter({ name: "umw_query_cache_fenced_total", help: "Loaded values refused by the versioned set.", labelNames: byType });
    this.cacheErrors = registry.counter({ name: "umw_query_cache_errors_total", help: "Cache operations that failed (reads degraded to the backend).", labelNames: ["op"] });
    this.waiting = registry.gauge({ name: "umw_query_cache_waiting", help: "Reads currently waiting for a load (leader and collapsed waiters).", labelNames: byType });
    this.backendLatency = registry.histogram({
      name: "umw_query_backend_duration_seconds",
      help: "Backend call latency.",
      labelNames: [...byType, "backend", "op", "outcome"],
      buckets: LATENCY_BUCKETS,
    });
  }
}
