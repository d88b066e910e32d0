import { startMeshServer, type ServiceModule } from "../../runtime/service.js";

/** Skeleton: serves Health and reflection over mTLS until the service's own work lands. */
export const realtimeService: ServiceModule = {
  name: "realtime",
  description: "Live change streams (RealtimeService)",
  async start(runtime) {
    const server = await startMeshServer(runtime, { name: "realtime", port: runtime.config.realtimePort });
    return { name: "realtime", stop: () => server.stop() };
  },
};
