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
};

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
  { name: "cli", role: "client" },
];
