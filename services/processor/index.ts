import { closeStack, startMeshServer, type ServiceModule } from "../../runtime/service.js";
import { topicNames } from "../../runtime/topics.js";
import { createProcessor } from "./processor.js";
import { processorMetrics } from "./processor-metrics.js";
import { instrumentBus } from "../../runtime/bus-metrics.js";
import { watchDeadLetterSize } from "../../runtime/backlog-metrics.js";
import { defaultRegistry } from "../../runtime/metrics.js";
import { writePathTopics } from "./settings.js";

export { createProcessor, statusJson, type Outcome, type Processor, type ProcessorDeps, type Topics } from "./processor.js";
export { DLQ_HEADERS, DLQ_HEADER_PREFIX, describeDeadLetter, originalMessage, type DeadLetter } from "./dead-letter.js";
export { mergePatch, applyFieldMask } from "./merge-patch.js";

/**
 * The processor worker: consumes `umw.commands.v1`, applies each command in one transaction on the
 * primary, dead-letters what it cannot apply. Serves only Health (and reflection) on its port.
 */
export const processorService: ServiceModule = {
  name: "processor",
  description: "Applies commands to the primary database",
  async start(runtime) {
    const { config } = runtime;
    const log = runtime.log;
    const topics = topicNames(config);
    const cleanup = closeStack(log);
    const closeAll = cleanup.closeAll;
    try {
      // Each dependency is reached in turn; a failure names it and its address (UNAVAILABLE).
      const db = await runtime.infrastructure.primary("processor");
      const bus = instrumentBus(await runtime.infrastructure.bus());
      await bus.ensureTopics(writePathTopics(topics, config.topicPartitions));
      const processor = createProcessor({
        db,
        bus,
        topics,
        log,
        resources: config.resources,
        payloadMaxBytes: config.payloadMaxBytes,
        group: `${config.topicPrefix}umw-processor`,
        maxAttempts: config.processorMaxAttempts,
        batchSize: config.processorBatchSize,
        onOutcome: processorMetrics(),
      });
      await processor.start();
      const unwatchDeadLetters = watchDeadLetterSize(defaultRegistry, bus, topics.commandsDlq);
      cleanup.push(async () => unwatchDeadLetters());
      cleanup.push(() => processor.stop());
      const server = await startMeshServer(runtime, { name: "processor", port: config.processorPort });
      cleanup.push(() => server.stop());
      return { name: "processor", stop: closeAll };
    } catch (error) {
      await closeAll();
      throw error;
    }
  },
};
