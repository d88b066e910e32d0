import { CommandService } from "../../gen/umw/v1/command_pb.js";
import { closeStack, startMeshServer, type ServiceModule } from "../../runtime/service.js";
import { topicNames } from "../../runtime/topics.js";
import { createCommandService } from "./command-service.js";

export { createCommandService, statusUrl, type CommandServiceImpl, type CommandServiceOptions } from "./command-service.js";
export { CommandFeed } from "./command-feed.js";
export { parseIdempotencyKey, keyOwner, fingerprint, canonicalJson } from "./idempotency.js";

/**
 * `umw serve command`: CommandService over mTLS on commandPort, writing to the primary. Exits with
 * a clear error when the primary cannot be reached at start.
 */
export const commandService: ServiceModule = {
  name: "command",
  description: "Writes as commands (CommandService)",
  async start(runtime) {
    const { config, log, infrastructure } = runtime;
    const cleanup = closeStack(log);
    try {
      const impl = createCommandService({
        db: await infrastructure.primary("command"),
        resources: config.resources,
        topics: topicNames(config),
        log,
        idempotencyTtlMs: config.idempotencyTtlMs,
        idempotencySweepMs: config.idempotencySweepMs,
        watchPollMs: config.commandWatchPollMs,
        trustedPrincipalPeers: config.trustedPrincipalPeers,
        payloadLimits: { maxDepth: config.payloadMaxDepth, maxBytes: config.payloadMaxBytes },
        groupCommit: config.commandGroupCommit > 0 && { maxInFlight: config.commandGroupCommit, maxGroup: 256 },
      });
      cleanup.push(() => impl.close());
      impl.start();
      const server = await startMeshServer(runtime, { name: "command", port: config.commandPort, service: CommandService, handlers: impl.handlers });
      cleanup.push(() => server.stop());
      return { name: "command", stop: cleanup.closeAll };
    } catch (error) {
      await cleanup.closeAll();
      throw error;
    }
  },
};
