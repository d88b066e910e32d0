import { startMeshServer, type ServiceModule } from "../../runtime/service.js";

/** Skeleton: serves Health and reflection over mTLS until the service's own work lands. */
export const processorService: ServiceModule = {
  name: "processor",
  description: "Applies commands to the primary database",
  async start(runtime) {
    const server = await startMeshServer(runtime, { name: "processor", port: runtime.config.processorPort });
    return { name: "processor", stop: () => server.stop() };
  },
};
