import { startMeshServer, type ServiceModule } from "../../runtime/service.js";

/** Skeleton: serves Health and reflection over mTLS until the service's own work lands. */
export const relayService: ServiceModule = {
  name: "relay",
  description: "Outbox relay to Kafka",
  async start(runtime) {
    const server = await startMeshServer(runtime, { name: "relay", port: runtime.config.relayPort });
    return { name: "relay", stop: () => server.stop() };
  },
};
