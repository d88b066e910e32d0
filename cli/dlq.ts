import { randomBytes } from "node:crypto";
import { Kafka, logLevel, type SASLOptions } from "kafkajs";
import { pino } from "pino";
import type { IncomingMessage } from "../runtime/bus.js";
import { loadConfig, type Config } from "../runtime/config.js";
import { KafkaBus } from "../runtime/kafka-bus.js";
import { kafkaSasl } from "../runtime/kafka-sasl.js";
import { createLogger, type Logger } from "../runtime/logger.js";
import { topicNames } from "../runtime/topics.js";
import { describeDeadLetter, originalMessage, type DeadLetter } from "../services/processor/dead-letter.js";

export const DLQ_USAGE = `usage: umw dlq <command>

  list [--limit N] [--json]   dead letters of the commands DLQ (the N most recent, default 50)
  replay <id>|--all           put dead letters back on the commands topic; <id> is the message id
                              (ce_id) or a DLQ position <partition>:<offset> as listed
`;

export interface DlqIo {
  /** Defaults to loadConfig(). */
  readonly config?: Config;
  readonly out?: (line: string) => void;
  readonly err?: (line: string) => void;
  /** Kafka client logs; warnings to stderr by default. */
  readonly log?: Logger;
  /** How long reading the DLQ may take. */
  readonly timeoutMs?: number;
}

/** `umw dlq list|replay`: returns the process exit code (0 ok, 1 failure, 2 usage). */
export async function runDlq(args: string[], io: DlqIo = {}): Promise<number> {
  const out = io.out ?? ((line: string) => console.log(line));
  const err = io.err ?? ((line: string) => console.error(line));
  const [command, ...rest] = args;
  if (command !== "list" && command !== "replay") {
    (command === undefined || command === "help" || command === "--help" ? out : err)(DLQ_USAGE);
    return command === "help" || command === "--help" ? 0 : 2;
  }
  const config = io.config ?? loadConfig();
  // stderr, with the same redaction as every umw log (runtime/logger.ts).
  const log = io.log ?? createLogger("warn", pino.destination(2)).child({ cli: "dlq" });
  const topics = topicNames(config);

  if (command === "list") {
    const parsed = parseListArgs(rest);
    if (typeof parsed === "string") {
      err(`umw dlq list: ${parsed}\n\n${DLQ_USAGE}`);
      return 2;
    }
    const letters = (await readTopic(config.kafkaBrokers, topics.commandsDlq, log, io.timeoutMs, kafkaSasl(config))).map(describeDeadLetter);
    const shown = letters.slice(-parsed.limit);
    if (parsed.json) {
      for (const letter of shown) out(JSON.stringify(jsonOf(letter)));
      return 0;
    }
    if (shown.length === 0) {
      out(`no dead letters in ${topics.commandsDlq}`);
      return 0;
    }
    out(formatTable(shown));
    if (shown.length < letters.length) out(`(${shown.length} most recent of ${letters.length}; --limit N shows more)`);
    return 0;
  }

  const target = rest[0];
  if (rest.length !== 1 || !target) {
    err(`umw dlq replay: name one dead letter id, or --all\n\n${DLQ_USAGE}`);
    return 2;
  }
  const letters = (await readTopic(config.kafkaBrokers, topics.commandsDlq, log, io.timeoutMs, kafkaSasl(config))).map(describeDeadLetter);
  // A message dead-lettered twice (replayed, failed again) appears twice: replay its latest copy once.
  const latest = new Map<string, DeadLetter>();
  for (const letter of letters) latest.set(letter.id, letter);
  const chosen = target === "--all" ? [...latest.values()] : [...latest.values()].filter((letter) => letter.id === target || letter.position === target);
  if (chosen.length === 0) {
    err(target === "--all" ? `no dead letters in ${topics.commandsDlq}` : `umw dlq replay: no dead letter ${target} in ${topics.commandsDlq}`);
    return target === "--all" ? 0 : 1;
  }
  const bus = new KafkaBus({ brokers: config.kafkaBrokers, clientId: "umw-cli-dlq", log, sasl: kafkaSasl(config) });
  try {
    await bus.connect();
    await bus.publish(
      topics.commands,
      chosen.map((letter) => originalMessage(letter.message)),
    );
  } finally {
    await bus.close();
  }
  for (const letter of chosen) out(`replayed ${letter.id} (${letter.command} ${letter.subject || letter.tenant}) to ${topics.commands}`);
  return 0;
}

function parseListArgs(args: string[]): { limit: number; json: boolean } | string {
  let limit = 50;
  let json = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--json") json = true;
    else if (arg === "--limit" || arg.startsWith("--limit=")) {
      const raw = arg === "--limit" ? args[++i] : arg.slice("--limit=".length);
      const value = Number(raw);
      if (!Number.isInteger(value) || value < 1) return `--limit needs a positive integer, not ${JSON.stringify(raw ?? "")}`;
      limit = value;
    } else return `unknown argument ${JSON.stringify(arg)}`;
  }
  return { limit, json };
}

function jsonOf(letter: DeadLetter) {
  const { message: _message, ...rest } = letter;
  return rest;
}

function formatTable(letters: readonly DeadLetter[]): string {
  const rows = [
    ["ID", "COMMAND", "TENANT/SUBJECT", "ERROR", "ATTEMPTS", "TIME"],
    ...letters.map((letter) => [
      letter.id,
      letter.command,
      letter.subject || letter.tenant || "?",
      `${letter.reason}: ${oneLine(letter.error, 80)}`,
      String(letter.attempts),
      letter.time,
    ]),
  ];
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!))).join("  ")).join("\n");
}

function oneLine(text: string, max: number): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/**
 * Every message a topic holds right now, oldest first: reads from the beginning
 * with a throwaway consumer group (deleted afterwards) up to the high watermarks taken at the start.
 * Kafka-specific: the EventBus port has no notion of "the end of a topic".
 */
export async function readTopic(brokers: readonly string[], topic: string, log: Logger, timeoutMs = 30_000, sasl?: SASLOptions): Promise<IncomingMessage[]> {
  const kafka = new Kafka({
    clientId: "umw-cli-dlq",
    brokers: [...brokers],
    ...(sasl && { sasl }),
    connectionTimeout: 3_000,
    retry: { retries: 3 },
    logLevel: logLevel.NOTHING,
  });
  const admin = kafka.admin();
  try {
    await admin.connect();
  } catch (error) {
    throw new Error(`cannot reach Kafka at ${brokers.join(",")}: ${(error as Error).message}`);
  }
  const group = `umw-dlq-cli-${randomBytes(6).toString("hex")}`;
  try {
    if (!(await admin.listTopics()).includes(topic)) return [];
    const offsets = await admin.fetchTopicOffsets(topic);
    const remaining = new Map<number, bigint>();
    for (const { partition, high, low } of offsets) if (BigInt(high) > BigInt(low)) remaining.set(partition, BigInt(high));
    if (remaining.size === 0) return [];
    const messages: IncomingMessage[] = [];
    const consumer = kafka.consumer({ groupId: group, sessionTimeout: 10_000, heartbeatInterval: 1_000, maxWaitTimeInMs: 100 });
    try {
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: true });
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`reading ${topic} took longer than ${timeoutMs} ms`)), timeoutMs);
        consumer
          .run({
            autoCommit: false,
            eachMessage: async ({ partition, message }) => {
              const high = remaining.get(partition);
              const offset = BigInt(message.offset);
              if (high === undefined || offset >= high) return;
              const headers: Record<string, string> = {};
              for (const [name, value] of Object.entries(message.headers ?? {})) {
                const first = Array.isArray(value) ? value[0] : value;
                if (first !== undefined) headers[name] = first.toString();
              }
              messages.push({ topic, partition, offset, key: message.key?.toString() ?? "", value: message.value ?? Buffer.alloc(0), headers, timestamp: Number(message.timestamp) });
              if (offset + 1n >= high) remaining.delete(partition);
              if (remaining.size === 0) {
                clearTimeout(timer);
                resolve();
              }
            },
          })
          .catch((error: unknown) => {
            clearTimeout(timer);
            reject(error);
          });
      });
    } finally {
      await consumer.disconnect().catch(() => undefined);
    }
    log.debug({ topic, count: messages.length }, "read topic");
    // Oldest first across partitions (broker time), stable within a partition.
    return messages.sort((a, b) => a.timestamp - b.timestamp || a.partition - b.partition || (a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0));
  } finally {
    await admin.deleteGroups([group]).catch(() => undefined);
    await admin.disconnect();
  }
}
