// The whole write path in this process, on the real Postgres primary and Kafka: the edge (REST,
// Connect) -> CommandService over mTLS -> outbox -> relay -> Kafka -> processor -> umw_entities.
// Everything is the run's own: database, topic prefix, consumer groups, certificates.
import assert from "node:assert/strict";
import { CommandService } from "../../gen/umw/v1/command_pb.js";
import { createClient, type MeshClient } from "../../runtime/client.js";
import { KafkaBus } from "../../runtime/kafka-bus.js";
import { rootLogger } from "../../runtime/logger.js";
import type { Resources } from "../../runtime/resources.js";
import { MeshServer } from "../../runtime/server.js";
import { connectPostgres, type Database } from "../../runtime/sql.js";
import { clientCredentials, serverCredentials } from "../../runtime/tls.js";
import { topicNames } from "../../runtime/topics.js";
import { createCommandService, type CommandServiceImpl } from "../../services/command/command-service.js";
import type { PayloadLimits } from "../../services/command/payload-limits.js";
import type { EdgeAuth } from "../../services/edge/authenticator.js";
import { startEdge, type RunningEdge } from "../../services/edge/edge-server.js";
import { createProcessor, type Processor } from "../../services/processor/processor.js";
import { writePathTopics } from "../../services/processor/settings.js";
import { createOutboxRelay, type OutboxRelay } from "../../services/relay/relay.js";
import { testCerts, type TestCerts } from "../support/certs.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { infra } from "../support/env.js";
import { dropKafkaPrefix, runPrefix } from "../processor/support.js";
import { waitFor } from "../support/wait.js";

const log = rootLogger("silent");

export interface CommandOutcome {
  readonly state: "applied" | "rejected" | "failed";
  readonly version: string | null;
  /** The ErrorInfo reason of a rejection or failure. */
  readonly reason: string | undefined;
  readonly message: string | undefined;
}

export interface WriteStack {
  readonly edge: RunningEdge;
  /** CommandService straight over mTLS gRPC, as the `cli` identity. */
  readonly grpc: MeshClient<typeof CommandService>;
  readonly db: Database;
  /** Waits until the command is applied, rejected or failed. */
  outcome(commandId: string, timeoutMs?: number): Promise<CommandOutcome>;
  stop(): Promise<void>;
}

export async function startWriteStack(options: { resources: Resources; payloadLimits?: PayloadLimits; auth?: EdgeAuth }): Promise<WriteStack> {
  const prefix = runPrefix();
  const topics = topicNames({ topicPrefix: prefix });
  const cleanups: (() => Promise<void> | void)[] = [];
  const stop = async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  };
  try {
    const database: TestDatabase = await createTestDatabase();
    cleanups.push(() => database.drop());
    cleanups.push(() => dropKafkaPrefix(prefix));
    const db = await connectPostgres({ url: database.url, role: "primary", log, max: 10 });
    cleanups.push(() => db.close());
    const bus = new KafkaBus({ sasl: infra.kafkaSasl, brokers: infra.kafkaBrokers, clientId: `${prefix}write-stack`, log });
    await bus.connect();
    cleanups.push(() => bus.close());
    const specs = writePathTopics(topics, 2);
    await bus.ensureTopics(specs);

    const processor: Processor = createProcessor({ db, bus, topics, log, resources: options.resources, payloadMaxBytes: options.payloadLimits?.maxBytes, group: `${prefix}umw-processor`, maxAttempts: 2 });
    cleanups.push(() => processor.stop());
    const relay: OutboxRelay = createOutboxRelay({ db, bus, topics: specs, log, pollMs: 50 });
    cleanups.push(() => relay.stop());
    relay.start();
    await Promise.all([processor.start(), relay.whenLeader()]);

    const certs: TestCerts = testCerts(["command", "edge", "cli"]);
    cleanups.push(() => certs.remove());
    const impl: CommandServiceImpl = createCommandService({
      db,
      resources: options.resources,
      topics,
      log,
      idempotencySweepMs: 0,
      listen: false,
      payloadLimits: options.payloadLimits,
    });
    cleanups.push(() => impl.close());
    const server = new MeshServer({ name: "command", host: "127.0.0.1", port: 0, credentials: serverCredentials(certs.identity("command")), log });
    server.addService(CommandService, impl.handlers);
    const port = await server.start();
    cleanups.push(() => server.stop());
    const grpc = createClient(CommandService, `127.0.0.1:${port}`, clientCredentials(certs.identity("cli")));
    cleanups.push(() => grpc.close());
    const edge = await startEdge({
      // Most write-path tests are about accepting and applying, not authentication: explicitly none unless given.
      auth: options.auth ?? { mode: "none" },
      port: 0,
      upstreams: [{ service: CommandService, address: `127.0.0.1:${port}` }],
      credentials: clientCredentials(certs.identity("edge")),
      payloadLimits: options.payloadLimits,
      log,
    });
    cleanups.push(() => edge.stop());

    return {
      edge,
      grpc,
      db,
      stop,
      outcome: (commandId, timeoutMs = 20_000) =>
        waitFor(
          async () => {
            const { rows } = await db.query<{ state: string; version: string | null; error: { message?: string; details?: { reason?: string }[] } | null }>(
              "SELECT state, version::text AS version, error FROM umw_commands WHERE id = $1",
              [commandId],
            );
            const row = rows[0];
            assert.ok(row, `command ${commandId} is recorded`);
            if (row.state === "accepted") return undefined;
            return {
              state: row.state as CommandOutcome["state"],
              version: row.version,
              reason: row.error?.details?.find((detail) => detail.reason)?.reason,
              message: row.error?.message,
            };
          },
          { what: `command ${commandId} to end`, timeoutMs },
        ),
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
