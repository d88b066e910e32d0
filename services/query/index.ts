import { startMeshServer, type ServiceModule } from "../../runtime/service.js";

/** Skeleton: serves Health and reflection over mTLS until the service's own work lands. */
export const queryService: ServiceModule = {
  name: "query",
  description: "Cache-first reads (QueryService)",
  async start(runtime) {
    const server = await startMeshServer(runtime, { name: "query", port: runtime.config.queryPort });
    return { name: "query", stop: () => server.stop() };
  },
};
