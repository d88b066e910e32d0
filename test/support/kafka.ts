import { Kafka, logLevel } from "kafkajs";
import { infra, runId } from "./env.js";

/** Topic prefix (and consumer-group and key prefix) of one test run. */
export function runPrefix(): string {
  return `t${runId()}.`;
}

/** Deletes the run's topics and consumer groups: everything whose name starts with the prefix. */
export async function dropKafkaPrefix(prefix: string): Promise<void> {
  const kafka = new Kafka({ sasl: infra.kafkaSasl, clientId: "umw-test-cleanup", brokers: [...infra.kafkaBrokers], logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  try {
    const groups = (await admin.listGroups()).groups.map((group) => group.groupId).filter((id) => id.startsWith(prefix));
    if (groups.length) await admin.deleteGroups(groups).catch(() => undefined);
    const topics = (await admin.listTopics()).filter((topic) => topic.startsWith(prefix));
    if (topics.length) await admin.deleteTopics({ topics, timeout: 10_000 });
  } finally {
    await admin.disconnect();
  }
}
