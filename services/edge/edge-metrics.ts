import { counter, defaultRegistry, gauge, histogram, LATENCY_BUCKETS, type Registry } from "../../runtime/metrics.js";

type HttpLabel = "http_request_method" | "http_route" | "http_response_status_code";

const KNOWN_METHODS = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);

/** Requests in progress by method label, per registry (read into http_server_active_requests when scraped). */
const inProgressByRegistry = new WeakMap<Registry, Map<string, number>>();

/** What a request whose path no route matches is counted under (never the raw path). */
export const UNMATCHED_ROUTE = "_unmatched";

/**
 * OpenTelemetry's HTTP server conventions as Prometheus names (`http.server.request.duration` →
 * `http_server_request_duration_seconds`). `http_route` is the matched template
 * (`/v1/tenants/{tenant}/types/{type}/entities/{id}`), the Connect procedure path, `/healthz`,
 * `/readyz` or `_unmatched`; the method is one of the standard ones or `_OTHER`: every value comes
 * from a fixed set, so no request can add a series of its own.
 */
export function edgeHttpMetrics(registry: Registry = defaultRegistry) {
  const duration = histogram<HttpLabel>(registry, {
    name: "http_server_request_duration_seconds",
    help: "Duration of HTTP requests at the edge (until the response ended), by method, route template and status.",
    labelNames: ["http_request_method", "http_route", "http_response_status_code"],
    buckets: LATENCY_BUCKETS,
  });
  // Counted in a plain map and read into the gauge at scrape time (prom-client's inc/dec hash the
  // label set on every call, twice a request); one map per registry, so edges sharing one share the gauge.
  let counts = inProgressByRegistry.get(registry);
  if (!counts) inProgressByRegistry.set(registry, (counts = new Map()));
  const inProgress = counts;
  gauge<"http_request_method">(registry, {
    name: "http_server_active_requests",
    help: "HTTP requests at the edge in progress (streams included).",
    labelNames: ["http_request_method"],
    collect() {
      for (const [method, count] of inProgress) this.set({ http_request_method: method }, count);
    },
  });
  const aborted = counter(registry, {
    name: "umw_edge_requests_aborted_total",
    help: "HTTP requests whose connection closed before the response ended (client gone, stream reset).",
  });
  return {
    /** Call at the start of a request; `route()` is asked once it ends. */
    started(method: string | undefined, response: { once(event: "close", listener: () => void): unknown; readonly statusCode: number; readonly writableFinished: boolean }, route: () => string): void {
      const methodLabel = method && KNOWN_METHODS.has(method) ? method : "_OTHER";
      const begun = performance.now();
      inProgress.set(methodLabel, (inProgress.get(methodLabel) ?? 0) + 1);
      response.once("close", () => {
        inProgress.set(methodLabel, inProgress.get(methodLabel)! - 1);
        let httpRoute: string;
        try {
          httpRoute = route();
        } catch {
          httpRoute = UNMATCHED_ROUTE; // metrics never fail a request
        }
        if (!response.writableFinished) aborted.inc();
        duration.observe(
          { http_request_method: methodLabel, http_route: httpRoute, http_response_status_code: String(response.statusCode) },
          (performance.now() - begun) / 1000,
        );
      });
    },
  };
}
