import { infra } from "../support/env.js";

export { infra } from "../support/env.js";
export { createTestDatabase as freshDatabase, type TestDatabase } from "../support/database.js";
export { dropKafkaPrefix as deleteTopics, runPrefix as testTopicPrefix } from "../support/kafka.js";
export const KAFKA_BROKERS = infra.kafkaBrokers;

/** A TCP port nothing listens on (one that was free a moment ago). */
export { freePort as closedPort } from "../support/ports.js";

