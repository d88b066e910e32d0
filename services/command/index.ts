import { CommandService } from "../../gen/umw/v1/command_pb.js";
import { startMeshServer, type ServiceModule } from "../../runtime/service.js";
import { connectPostgres } from "../../runtime/sql.js";
import { topicNames } from "../../runtime/topics.js";
import { createCommandService } from "./command-service.js";

export { createCommandService, statusUrl, type CommandServiceImpl, type CommandServiceOptions } from "./command-service.js";
export { CommandFeed } from "./command-feed.js";
export { parseIdempotencyKey, principalOf, fingerprint, canonicalJson } from "./idempotency.js";

/**
 * `umw serve command`: CommandService over mTLS on commandPort, writing to the primary. Exits with
 * a clear error when the primary cannot be reached at start.
 */
export const commandService: ServiceModule = {
  name: "command",
  description: "Writes as commands (CommandService)",
  async start(runtime) {
    const { config, log } = runtime;
    const db = await connectPostgres({ url: config.pgUrl, role: "primary", log, max: 20 });
    const impl = createCommandService({
      db,
      resources: config.resources,
      topics: topicNames(config),
      log,
      idempotencyTtlMs: config.idempotencyTtlMs,
      idempotencySweepMs: config.idempotencySweepMs,
      watchPollMs: config.commandWatchPollMs,
      trustedPrincipalPeers: config.trustedPrincipalPeers,
      payloadLimits: { maxDepth: config.payloadMaxDepth, maxBytes: config.payloadMaxBytes },
    });
    try {
      impl.start();
      const server = await startMeshServer(runtime, { name: "command", port: config.commandPort, service: CommandService, handlers: impl.handlers });
      return {
        name: "command",
        async stop() {
          await server.stop();
          await impl.close();
          await db.close();
        },
      };
    } catch (error) {
      await impl.close();
      await db.close();
      throw error;
    }
  },
};
