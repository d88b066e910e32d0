import { test } from "node:test";
import assert from "node:assert/strict";
import { Registry } from "../../runtime/metrics.js";
import { parseMetrics } from "../../runtime/prometheus-text.js";
import { outboxGauges } from "./relay-metrics.js";

test("outbox gauges: one backlog read per scrape; a failed read keeps the scrape answering and is counted", async () => {
  const registry = new Registry();
  let reads = 0;
  let failing = false;
  outboxGauges(
    {
      async query<R>() {
        reads++;
        if (failing) throw new Error("connection refused");
        return { rows: [{ backlog: "7", age: 12.5 }] as R[], rowCount: 1 } as never;
      },
    },
    registry,
  );
  const value = (samples: ReturnType<typeof parseMetrics>, name: string) => samples.find((s) => s.name === name)?.value;
  const first = parseMetrics(await registry.metrics());
  assert.equal(value(first, "umw_outbox_backlog"), 7);
  assert.equal(value(first, "umw_outbox_oldest_age_seconds"), 12.5);
  assert.equal(reads, 1, "both gauges come from one query");
  await new Promise((resolve) => setTimeout(resolve, 150));
  failing = true;
  const second = parseMetrics(await registry.metrics());
  assert.equal(reads, 2);
  assert.equal(value(second, "umw_outbox_read_failures_total"), 1);
  assert.equal(value(second, "umw_outbox_backlog"), 7, "the last value stays");
});
