import { test } from "node:test";
import assert from "node:assert/strict";
import { parseMetrics } from "../runtime/prometheus-text.js";
import { meshStatus, quantile } from "./golden-signals.js";

test("quantile interpolates within the bucket like histogram_quantile, and has none without observations", () => {
  const buckets = new Map([
    [0.05, 0],
    [0.1, 10],
    [Infinity, 10],
  ]);
  assert.equal(quantile(0.95, buckets), 0.0975);
  assert.equal(quantile(0.5, new Map([[Infinity, 0]])), undefined);
  // Everything above the last finite bound: the bound is the answer (as Prometheus does).
  assert.equal(quantile(0.99, new Map([[0.1, 0], [Infinity, 4]])), 0.1);
});

const scrape = (ok: number, unavailable: number, notFound: number, fast: number) =>
  parseMetrics(
    [
      `rpc_server_calls_total{rpc_system="grpc",rpc_service="umw.v1.QueryService",rpc_method="GetEntity",rpc_grpc_status_code="0"} ${ok}`,
      `rpc_server_calls_total{rpc_system="grpc",rpc_service="umw.v1.QueryService",rpc_method="GetEntity",rpc_grpc_status_code="14"} ${unavailable}`,
      `rpc_server_calls_total{rpc_system="grpc",rpc_service="umw.v1.QueryService",rpc_method="GetEntity",rpc_grpc_status_code="5"} ${notFound}`,
      `rpc_server_duration_seconds_bucket{le="0.001",rpc_service="umw.v1.QueryService"} ${fast}`,
      `rpc_server_duration_seconds_bucket{le="0.01",rpc_service="umw.v1.QueryService"} ${ok + unavailable + notFound}`,
      `rpc_server_duration_seconds_bucket{le="+Inf",rpc_service="umw.v1.QueryService"} ${ok + unavailable + notFound}`,
      `umw_consumer_lag_seconds{group="umw-processor",topic="c",partition="0"} 0.5`,
      `umw_consumer_lag_seconds{group="umw-processor",topic="c",partition="1"} 2`,
      `umw_outbox_backlog 3`,
    ].join("\n"),
  );

test("meshStatus: rates and server errors over the window (NOT_FOUND is not an error), latency from the window's observations, lag per group", () => {
  const status = meshStatus([{ target: "a", up: true, services: ["query"] }], scrape(300, 20, 80, 100), scrape(100, 0, 0, 100), 2);
  const query = status.signals["umw.v1.QueryService"]!;
  assert.equal(query.rate, 150);
  assert.equal(query.errors, 10);
  assert.equal(query.total, 400);
  // In the window every call took between 1 and 10 ms (the 100 fast ones were before it).
  assert.ok(query.p50! > 0.001 && query.p50! <= 0.01, String(query.p50));
  assert.deepEqual(status.pipeline.consumerLagSeconds, { "umw-processor": 2 });
  assert.equal(status.pipeline.outboxBacklog, 3);
  const single = meshStatus([], scrape(1, 0, 0, 1), undefined, undefined);
  assert.equal(single.signals["umw.v1.QueryService"]!.rate, undefined, "no rate from one scrape");
});
