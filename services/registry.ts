import type { CertificateSpec } from "../runtime/certs.js";
import type { ServiceModule } from "../runtime/service.js";

/** Every service umw can run, by the name `umw serve <name>` takes; loaded only when served. */
export const SERVICES: Readonly<Record<string, () => Promise<ServiceModule>>> = {
  query: async () => (await import("./query/index.js")).queryService,
  command: async () => (await import("./command/index.js")).commandService,
  realtime: async () => (await import("./realtime/index.js")).realtimeService,
  relay: async () => (await import("./relay/index.js")).relayService,
  processor: async () => (await import("./processor/index.js")).processorService,
  "cache-updater": async () => (await import("./cache-updater/index.js")).cacheUpdaterService,
  edge: async () => (await import("./edge/index.js")).edgeService,
  canary: async () => (await import("./canary/index.js")).canaryService,
  policy: async () => (await import("./policy/index.js")).policyService,
  ratelimit: async () => (await import("./ratelimit/index.js")).ratelimitService,
};

/** What `umw serve all` runs: every service but the canary (a prober, run on purpose). */
export const ALL_SERVICES = Object.keys(SERVICES).filter((name) => name !== "canary");

/**
 * The port of a process's metrics listener: the base (UMW_METRICS_PORT) when it runs several
 * services, the base plus the service's offset (its place in SERVICES) when it runs one, so
 * single-service processes on one host do not collide. Port 0 stays 0 (a free port).
 */
export function metricsPortOf(base: number, services: readonly string[]): number {
  if (base === 0 || services.length !== 1) return base;
  return base + Math.max(0, Object.keys(SERVICES).indexOf(services[0]!));
}

/** The xDS control plane for Envoy (`umw control-plane`); not part of `serve all`. */
export const CONTROL_PLANE = async (): Promise<ServiceModule> => (await import("./control-plane/index.js")).controlPlaneService;

/**
 * Mesh identities and the certificates they get (`umw certs`): query, command and realtime serve and
 * also call (they register with the control plane); the workers and the control plane only serve
 * (Health); the edges call the mesh and serve the public HTTPS listener (its dev certificate,
 * UMW_EDGE_TLS_CERT); the cli only calls.
 */
export const MESH_IDENTITIES: readonly CertificateSpec[] = [
  { name: "query", role: "both" },
  { name: "command", role: "both" },
  { name: "realtime", role: "both" },
  { name: "relay", role: "server" },
  { name: "processor", role: "server" },
  { name: "cache-updater", role: "server" },
  { name: "control-plane", role: "server" },
  { name: "edge", role: "both" },
  { name: "envoy", role: "both" },
  { name: "policy", role: "both" },
  { name: "ratelimit", role: "both" },
  { name: "canary", role: "client" },
  { name: "cli", role: "client" },
];
