import { startMeshServer, type ServiceModule } from "../../runtime/service.js";

/** Skeleton: serves Health and reflection over mTLS until the service's own work lands. */
export const commandService: ServiceModule = {
  name: "command",
  description: "Writes as commands (CommandService)",
  async start(runtime) {
    const server = await startMeshServer(runtime, { name: "command", port: runtime.config.commandPort });
    return { name: "command", stop: () => server.stop() };
  },
};
