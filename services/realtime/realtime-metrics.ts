import { Counter, defaultRegistry, Gauge, type Registry } from "../../runtime/metrics.js";
import type { RealtimeHubStats } from "./hub.js";

const COUNTERS: ReadonlyArray<[keyof RealtimeHubStats, string, string]> = [
  ["consumed", "umw_realtime_events_consumed_total", "Domain events the hub consumed from the bus."],
  ["conflated", "umw_realtime_events_conflated_total", "Pending changes replaced by a newer state of the same entity for a slow stream."],
  ["duplicates", "umw_realtime_events_dropped_total", "Re-delivered events the hub dropped as duplicates (dedup window)."],
  ["slowConsumers", "umw_realtime_slow_consumer_ends_total", "Streams ended with RESOURCE_EXHAUSTED / SLOW_CONSUMER."],
  ["resets", "umw_realtime_resets_total", "Resumes too old for the history, answered with a reset and a fresh snapshot."],
  ["replays", "umw_realtime_replays_total", "Resumes answered from the history."],
];

/**
 * The hub's metrics, read from its stats at each scrape (the hub keeps the counts; nothing is
 * counted twice): open streams, and the event and stream counters above. Unlabelled: one hub per process.
 */
export function realtimeMetrics(stats: () => RealtimeHubStats, registry: Registry = defaultRegistry): void {
  if (registry.getSingleMetric("umw_realtime_streams_open")) return;
  new Gauge({
    name: "umw_realtime_streams_open",
    help: "Subscribe streams open on this hub.",
    registers: [registry],
    collect() {
      this.set(stats().streams);
    },
  });
  for (const [field, name, help] of COUNTERS) {
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        // The hub's own count is the truth: the counter is set to it.
        this.reset();
        this.inc(Number(stats()[field]));
      },
    });
  }
}
