import { setTimeout as sleep } from "node:timers/promises";
import assert from "node:assert/strict";
import { infra } from "../support/env.js";

export { infra } from "../support/env.js";
export { createTestDatabase as freshDatabase, type TestDatabase } from "../support/database.js";
export { dropKafkaPrefix as deleteTopics, runPrefix as testTopicPrefix } from "../support/kafka.js";
export const KAFKA_BROKERS = infra.kafkaBrokers;

/** A TCP port nothing listens on (one that was free a moment ago). */
export { freePort as closedPort } from "../support/ports.js";

/** Polls `fn` until it returns something other than undefined/false, or fails after `timeoutMs`. */
export async function waitFor<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined | false> | T | undefined | false, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}
