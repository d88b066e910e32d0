import { configDefaults, type Config } from "../../runtime/config.js";

/**
 * Every bound of the hub. Each is a setting `realtime<Name>` (UMW_REALTIME_<NAME>) in
 * runtime/config.ts, where its default and its meaning are declared; defaults fit one hub
 * holding ~10,000 streams.
 */
export const LIMIT_NAMES = [
  "historyPerPartition",
  "snapshotLimit",
  "maxTopicsPerStream",
  "slowAfterMs",
  "maxQueuedEvents",
  "maxPendingEntities",
  "maxStuckMs",
  "heartbeatMs",
  "sweepIntervalMs",
  "maxStreamsPerConnection",
  "maxStreamsPerTenant",
  "dedupWindow",
  "commandCatchUpMs",
  "commandCatchUpLimit",
] as const;

export type RealtimeLimitName = (typeof LIMIT_NAMES)[number];
export type RealtimeLimits = { readonly [K in RealtimeLimitName]: number };

/** The config key of a limit, e.g. heartbeatMs -> realtimeHeartbeatMs (UMW_REALTIME_HEARTBEAT_MS). */
export function limitSetting<K extends RealtimeLimitName>(name: K): `realtime${Capitalize<K>}` & keyof Config {
  return `realtime${name[0]!.toUpperCase()}${name.slice(1)}` as `realtime${Capitalize<K>}` & keyof Config;
}

/** The hub's limits from the loaded config. */
export function realtimeLimits(config: Config): RealtimeLimits {
  return Object.fromEntries(LIMIT_NAMES.map((name) => [name, config[limitSetting(name)]])) as RealtimeLimits;
}

/** The limits with nothing configured (the schema's defaults). */
export const DEFAULT_LIMITS: RealtimeLimits = realtimeLimits(configDefaults());
