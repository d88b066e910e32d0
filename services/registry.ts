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
  ratelimit: async () => (await import("./ratelimit/index.js")).ratelimitService,
};

/** The xDS control plane for Envoy (`umw control-plane`); not part of `serve all`. */
export const CONTROL_PLANE = async (): Promise<ServiceModule> => (await import("./control-plane/index.js")).controlPlaneService;

/** Mesh identities that need a certificate: every service, plus clients that are not services (Envoy, the control plane). */
export const MESH_IDENTITIES = [...Object.keys(SERVICES), "cli", "control-plane", "envoy"];
