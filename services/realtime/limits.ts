import { z } from "zod";
import { ConfigError } from "../../runtime/config.js";

/** Every bound of the hub; defaults fit one hub holding ~10,000 streams. */
export interface RealtimeLimits {
  /** Events kept per partition for resume; a resume older than that gets a reset and a fresh snapshot. */
  readonly historyPerPartition: number;
  /** Most entities a type snapshot carries (ordered by id); the response header `x-umw-snapshot-truncated: true` says when more exist. */
  readonly snapshotLimit: number;
  readonly maxTopicsPerStream: number;
  /** A message waiting this long for the client to take it marks the stream slow: pending changes then conflate. */
  readonly slowAfterMs: number;
  /** Pending events of one stream past which changes conflate even before slowAfterMs (e.g. a burst during a snapshot read). */
  readonly maxQueuedEvents: number;
  /** Distinct entities pending for one stream past which it ends with RESOURCE_EXHAUSTED / SLOW_CONSUMER. */
  readonly maxPendingEntities: number;
  /** How long a stream may hold pending changes without the client taking any before it ends with SLOW_CONSUMER. */
  readonly maxStuckMs: number;
  /** An idle stream gets a Heartbeat after this long without a message. */
  readonly heartbeatMs: number;
  /** Period of the hub's sweep (heartbeats, stuck streams). */
  readonly sweepIntervalMs: number;
  /** Open streams per client connection (`x-umw-connection-id` from the edge) or, without it, per mTLS peer. */
  readonly maxStreamsPerConnection: number;
  readonly maxStreamsPerTenant: number;
  /** Message ids remembered to drop re-sent duplicates. */
  readonly dedupWindow: number;
  /** With a snapshot or reset, own-command statuses updated this recently are sent as a catch-up. */
  readonly commandCatchUpMs: number;
  readonly commandCatchUpLimit: number;
}

export const DEFAULT_LIMITS: RealtimeLimits = {
  historyPerPartition: 10_000,
  snapshotLimit: 1_000,
  maxTopicsPerStream: 100,
  slowAfterMs: 100,
  maxQueuedEvents: 1_024,
  maxPendingEntities: 1_000,
  maxStuckMs: 30_000,
  heartbeatMs: 15_000,
  sweepIntervalMs: 1_000,
  maxStreamsPerConnection: 10_000,
  maxStreamsPerTenant: 10_000,
  dedupWindow: 100_000,
  commandCatchUpMs: 5 * 60_000,
  commandCatchUpLimit: 100,
};

/** Environment variable of each limit: UMW_REALTIME_<SNAKE_CASE>, e.g. UMW_REALTIME_HEARTBEAT_MS. */
export function limitEnvName(key: keyof RealtimeLimits): string {
  return `UMW_REALTIME_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

/** The defaults, overridden by UMW_REALTIME_* variables; a bad value is named. */
export function limitsFromEnv(env: NodeJS.ProcessEnv = process.env): RealtimeLimits {
  const limits: Record<string, number> = { ...DEFAULT_LIMITS };
  const problems: string[] = [];
  for (const key of Object.keys(DEFAULT_LIMITS) as (keyof RealtimeLimits)[]) {
    const name = limitEnvName(key);
    const raw = env[name];
    if (raw === undefined || raw === "") continue;
    const parsed = z.coerce.number().int().min(0).safeParse(raw);
    if (parsed.success) limits[key] = parsed.data;
    else problems.push(`${name}=${JSON.stringify(raw)}: must be a non-negative integer`);
  }
  if (problems.length) throw new ConfigError(`invalid configuration:\n  ${problems.join("\n  ")}`);
  return limits as unknown as RealtimeLimits;
}
