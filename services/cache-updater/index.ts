import { startMeshServer, type ServiceModule } from "../../runtime/service.js";

/** Skeleton: serves Health and reflection over mTLS until the service's own work lands. */
export const cacheUpdaterService: ServiceModule = {
  name: "cache-updater",
  description: "Keeps the cache in step with domain events",
  async start(runtime) {
    const server = await startMeshServer(runtime, { name: "cache-updater", port: runtime.config.cacheUpdaterPort });
    return { name: "cache-updater", stop: () => server.stop() };
  },
};
