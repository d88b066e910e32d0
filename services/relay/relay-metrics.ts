import { counter, Counter, defaultRegistry, gauge, histogram, PIPELINE_BUCKETS, type Registry } from "../../runtime/metrics.js";
import type { Sql } from "../../runtime/sql.js";

/**
 * The relay's metrics: what it published and how long rows waited for it, and, read from the
 * outbox when Prometheus scrapes, the backlog (unpublished rows) and the age of the oldest one.
 */
export function relayMetrics(registry: Registry = defaultRegistry) {
  return {
    published: counter<"topic">(registry, { name: "umw_relay_published_total", help: "Outbox rows published to the bus (broker-acked), by topic.", labelNames: ["topic"] }),
    publishFailures: counter(registry, { name: "umw_relay_publish_failures_total", help: "Relay rounds that failed to publish (rows stay and are retried)." }),
    lag: histogram(registry, {
      name: "umw_relay_lag_seconds",
      help: "Time from an outbox row's commit to the broker's ack of its message (relay publish lag).",
      buckets: PIPELINE_BUCKETS,
    }),
    leader: gauge(registry, { name: "umw_relay_leader", help: "1 while this relay holds the outbox's leader lock, else 0." }),
  };
}

export type RelayMetrics = ReturnType<typeof relayMetrics>;

/**
 * `umw_outbox_backlog` and `umw_outbox_oldest_age_seconds`, read from the primary at each scrape
 * (on the partial index of unpublished rows). A failed read leaves the last values and counts in
 * `umw_outbox_read_failures_total`.
 */
export function outboxGauges(db: Pick<Sql, "query">, registry: Registry = defaultRegistry): void {
  if (registry.getSingleMetric("umw_outbox_backlog")) return;
  let failures: Counter | undefined;
  let last: Promise<{ backlog: number; age: number } | undefined> | undefined;
  // One query serves both gauges of a scrape.
  const read = () =>
    (last ??= db
      .query<{ backlog: string; age: number | null }>(
        "SELECT count(*)::text AS backlog, extract(epoch FROM now() - min(created_at))::float8 AS age FROM umw_outbox WHERE published_at IS NULL",
        [],
      )
      .then(({ rows }) => ({ backlog: Number(rows[0]?.backlog ?? 0), age: Math.max(0, rows[0]?.age ?? 0) }))
      .catch(() => {
        failures?.inc();
        return undefined;
      })
      .finally(() => setTimeout(() => (last = undefined), 100).unref()));
  gauge(registry, {
    name: "umw_outbox_backlog",
    help: "Outbox rows not yet published.",
    async collect() {
      const value = await read();
      if (value) this.set(value.backlog);
    },
  });
  gauge(registry, {
    name: "umw_outbox_oldest_age_seconds",
    help: "Age of the oldest unpublished outbox row (0 when none).",
    async collect() {
      const value = await read();
      if (value) this.set(value.age);
    },
  });
  // Its collect waits for the scrape's read, so the scrape shows the failure its own read counted.
  failures = new Counter({
    name: "umw_outbox_read_failures_total",
    help: "Scrapes whose outbox backlog read failed.",
    registers: [registry],
    async collect() {
      await read();
    },
  });
}
