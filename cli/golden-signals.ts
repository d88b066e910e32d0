import type { Sample } from "../runtime/prometheus-text.js";

/** gRPC codes that are the server's fault (what error ratios count): UNKNOWN, DEADLINE_EXCEEDED, INTERNAL, UNAVAILABLE, DATA_LOSS. */
export const SERVER_ERROR_CODES = new Set(["2", "4", "13", "14", "15"]);

export interface Signals {
  /** Calls (requests) per second over the window; with one scrape, undefined. */
  readonly rate: number | undefined;
  /** Server-fault errors per second. */
  readonly errors: number | undefined;
  /** Seconds; over the window's observations (or all since start with one scrape). */
  readonly p50: number | undefined;
  readonly p95: number | undefined;
  readonly p99: number | undefined;
  /** Calls counted since the process started. */
  readonly total: number;
}

export interface Pipeline {
  readonly outboxBacklog: number | undefined;
  readonly outboxOldestAgeSeconds: number | undefined;
  readonly relayLagP95Seconds: number | undefined;
  /** Max over partitions, by consumer group. */
  readonly consumerLagSeconds: Readonly<Record<string, number>>;
  readonly dlqMessages: number | undefined;
  readonly realtimeStreamsOpen: number | undefined;
  readonly canaryLastSuccessAgeSeconds: number | undefined;
  readonly canaryVisibleP95Seconds: number | undefined;
}

export interface ProcessStatus {
  readonly target: string;
  readonly up: boolean;
  readonly error?: string;
  /** Services this process runs (`umw_service_up`). */
  readonly services: readonly string[];
}

export interface MeshStatus {
  readonly at: string;
  readonly windowSeconds: number | undefined;
  readonly processes: readonly ProcessStatus[];
  /** By gRPC service (server side) and `edge (http)`. */
  readonly signals: Readonly<Record<string, Signals>>;
  readonly pipeline: Pipeline;
}

const select = (samples: readonly Sample[], name: string, where: (labels: Readonly<Record<string, string>>) => boolean = () => true) =>
  samples.filter((sample) => sample.name === name && where(sample.labels));
const total = (samples: readonly Sample[]) => samples.reduce((sum, sample) => sum + sample.value, 0);

/** The quantile of a Prometheus histogram's cumulative buckets (`le` → count), as histogram_quantile does. */
export function quantile(q: number, buckets: ReadonlyMap<number, number>): number | undefined {
  const bounds = [...buckets.keys()].sort((a, b) => a - b);
  const count = buckets.get(Infinity) ?? 0;
  if (count <= 0) return undefined;
  const rank = q * count;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const bound of bounds) {
    const cumulative = buckets.get(bound)!;
    if (cumulative >= rank) {
      if (bound === Infinity) return lowerBound;
      return lowerBound + ((bound - lowerBound) * (rank - lowerCount)) / Math.max(1e-12, cumulative - lowerCount);
    }
    lowerBound = bound;
    lowerCount = cumulative;
  }
  return undefined;
}

function bucketsOf(samples: readonly Sample[], name: string, where: (labels: Readonly<Record<string, string>>) => boolean): Map<number, number> {
  const buckets = new Map<number, number>();
  for (const sample of select(samples, `${name}_bucket`, where)) {
    const le = sample.labels.le === "+Inf" ? Infinity : Number(sample.labels.le);
    buckets.set(le, (buckets.get(le) ?? 0) + sample.value);
  }
  return buckets;
}

function minus(now: Map<number, number>, before: Map<number, number> | undefined): Map<number, number> {
  if (!before) return now;
  return new Map([...now].map(([le, count]) => [le, Math.max(0, count - (before.get(le) ?? 0))]));
}

function signalsOf(
  now: readonly Sample[],
  before: readonly Sample[] | undefined,
  seconds: number | undefined,
  counterName: string,
  histogramName: string,
  where: (labels: Readonly<Record<string, string>>) => boolean,
  isError: (labels: Readonly<Record<string, string>>) => boolean,
): Signals {
  const calls = total(select(now, counterName, where));
  const errors = total(select(now, counterName, (labels) => where(labels) && isError(labels)));
  const window = before && seconds ? seconds : undefined;
  const latency = minus(bucketsOf(now, histogramName, where), before && bucketsOf(before, histogramName, where));
  const perSecond = (value: number, earlier: number) => (window ? Math.max(0, value - earlier) / window : undefined);
  return {
    rate: perSecond(calls, before ? total(select(before, counterName, where)) : 0),
    errors: perSecond(errors, before ? total(select(before, counterName, (labels) => where(labels) && isError(labels))) : 0),
    p50: quantile(0.5, latency),
    p95: quantile(0.95, latency),
    p99: quantile(0.99, latency),
    total: calls,
  };
}

/** Golden signals of a mesh from two scrapes of every metrics listener (`before` may be missing: no rates then). */
export function meshStatus(processes: readonly ProcessStatus[], now: readonly Sample[], before: readonly Sample[] | undefined, windowSeconds: number | undefined): MeshStatus {
  const signals: Record<string, Signals> = {};
  const rpcServices = [...new Set(select(now, "rpc_server_calls_total").map((sample) => sample.labels.rpc_service!))].sort();
  for (const service of rpcServices) {
    const where = (labels: Readonly<Record<string, string>>) => labels.rpc_service === service;
    signals[service] = signalsOf(now, before, windowSeconds, "rpc_server_calls_total", "rpc_server_duration_seconds", where, (labels) => SERVER_ERROR_CODES.has(labels.rpc_grpc_status_code ?? ""));
  }
  if (select(now, "http_server_request_duration_seconds_count").length > 0) {
    signals["edge (http)"] = signalsOf(now, before, windowSeconds, "http_server_request_duration_seconds_count", "http_server_request_duration_seconds", () => true, (labels) =>
      (labels.http_response_status_code ?? "").startsWith("5"),
    );
  }
  const one = (name: string) => (select(now, name).length ? total(select(now, name)) : undefined);
  const consumerLag: Record<string, number> = {};
  for (const sample of select(now, "umw_consumer_lag_seconds")) {
    const group = sample.labels.group ?? "";
    consumerLag[group] = Math.max(consumerLag[group] ?? 0, sample.value);
  }
  const relayLag = minus(bucketsOf(now, "umw_relay_lag_seconds", () => true), before && bucketsOf(before, "umw_relay_lag_seconds", () => true));
  const visible = minus(
    bucketsOf(now, "umw_canary_stage_seconds", (labels) => labels.stage === "visible"),
    before && bucketsOf(before, "umw_canary_stage_seconds", (labels) => labels.stage === "visible"),
  );
  const lastSuccess = select(now, "umw_canary_last_success_timestamp_seconds").reduce((latest, sample) => Math.max(latest, sample.value), 0);
  return {
    at: new Date().toISOString(),
    windowSeconds,
    processes,
    signals,
    pipeline: {
      outboxBacklog: one("umw_outbox_backlog"),
      outboxOldestAgeSeconds: select(now, "umw_outbox_oldest_age_seconds").length ? Math.max(...select(now, "umw_outbox_oldest_age_seconds").map((s) => s.value)) : undefined,
      relayLagP95Seconds: quantile(0.95, relayLag),
      consumerLagSeconds: consumerLag,
      dlqMessages: one("umw_dlq_messages_total"),
      realtimeStreamsOpen: one("umw_realtime_streams_open"),
      canaryLastSuccessAgeSeconds: lastSuccess > 0 ? Math.max(0, Date.now() / 1000 - lastSuccess) : undefined,
      canaryVisibleP95Seconds: quantile(0.95, visible),
    },
  };
}
