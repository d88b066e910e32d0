import { randomBytes } from "node:crypto";
import { createServer } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import assert from "node:assert/strict";
import pg from "pg";
import kafkajs from "kafkajs";
import { migrate } from "../../runtime/migrate.js";

export const PG_URL = process.env.UMW_PG_URL ?? "postgres://umw:umw@127.0.0.1:15432/umw";
export const KAFKA_BROKERS = (process.env.UMW_KAFKA_BROKERS ?? "127.0.0.1:19092").split(",");

export interface TestDatabase {
  readonly name: string;
  readonly url: string;
  /** Drops the database, ending whatever connection is still open on it. */
  drop(): Promise<void>;
}

/** A fresh, migrated database `umw_t_<random>` on the primary. */
export async function freshDatabase(): Promise<TestDatabase> {
  const name = `umw_t_${randomBytes(6).toString("hex")}`;
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(PG_URL);
  url.pathname = `/${name}`;
  await migrate(url.toString());
  return {
    name,
    url: url.toString(),
    async drop() {
      const client = new pg.Client({ connectionString: PG_URL });
      await client.connect();
      try {
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await client.end();
      }
    },
  };
}

/** A topic prefix of its own per test run, and removal of its topics afterwards. */
export function testTopicPrefix(): string {
  return `t${randomBytes(5).toString("hex")}.`;
}

export async function deleteTopics(prefix: string): Promise<void> {
  const kafka = new kafkajs.Kafka({ brokers: KAFKA_BROKERS, clientId: "umw-test-cleanup", logLevel: kafkajs.logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  try {
    const topics = (await admin.listTopics()).filter((topic) => topic.startsWith(prefix));
    if (topics.length) await admin.deleteTopics({ topics, timeout: 10_000 });
  } finally {
    await admin.disconnect();
  }
}

/** A TCP port nothing listens on. */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

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
