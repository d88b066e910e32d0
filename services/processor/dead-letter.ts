import { fromBinary } from "@bufbuild/protobuf";
import type { IncomingMessage, OutgoingMessage } from "../../runtime/bus.js";
import { CommandSchema } from "../../gen/umw/v1/envelope_pb.js";

/**
 * Dead letters on `umw.commands.dlq.v1`: the original message (same key, value and headers) plus
 * `umw-dlq-*` headers that say why and where it came from. Removing those headers gives back the
 * original message exactly, so a replay is deduplicated by the processor's inbox like any redelivery.
 */
export const DLQ_HEADER_PREFIX = "umw-dlq-";

export const DLQ_HEADERS = {
  /** Machine-readable cause: UNDECODABLE, INVALID_COMMAND, PERMANENT_ERROR, RETRIES_EXHAUSTED. */
  reason: "umw-dlq-reason",
  /** The last error's message (truncated). */
  message: "umw-dlq-message",
  /** Postgres SQLSTATE or Node error code of the last error, when there was one. */
  code: "umw-dlq-code",
  attempts: "umw-dlq-attempts",
  topic: "umw-dlq-original-topic",
  partition: "umw-dlq-original-partition",
  offset: "umw-dlq-original-offset",
  /** Inbox consumer that gave up on the message. */
  consumer: "umw-dlq-consumer",
  /** When the message was dead-lettered (ISO 8601). */
  time: "umw-dlq-time",
} as const;

export type DeadLetterReason = "UNDECODABLE" | "INVALID_COMMAND" | "PERMANENT_ERROR" | "RETRIES_EXHAUSTED";

export interface DeadLetterCause {
  readonly reason: DeadLetterReason;
  readonly message: string;
  readonly code?: string;
  readonly attempts: number;
  readonly consumer: string;
}

const MAX_HEADER_MESSAGE = 1_000;

export function deadLetterMessage(original: IncomingMessage, cause: DeadLetterCause, now = new Date()): OutgoingMessage {
  const headers: Record<string, string> = { ...stripDeadLetterHeaders(original.headers) };
  headers[DLQ_HEADERS.reason] = cause.reason;
  headers[DLQ_HEADERS.message] = cause.message.length > MAX_HEADER_MESSAGE ? `${cause.message.slice(0, MAX_HEADER_MESSAGE)}...` : cause.message;
  if (cause.code) headers[DLQ_HEADERS.code] = cause.code;
  headers[DLQ_HEADERS.attempts] = String(cause.attempts);
  headers[DLQ_HEADERS.topic] = original.topic;
  headers[DLQ_HEADERS.partition] = String(original.partition);
  headers[DLQ_HEADERS.offset] = original.offset.toString();
  headers[DLQ_HEADERS.consumer] = cause.consumer;
  headers[DLQ_HEADERS.time] = now.toISOString();
  return { key: original.key, value: original.value, headers };
}

export function stripDeadLetterHeaders(headers: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !name.startsWith(DLQ_HEADER_PREFIX)));
}

/** The message to put back on the commands topic: the original key, value and headers. */
export function originalMessage(deadLetter: IncomingMessage): OutgoingMessage {
  return { key: deadLetter.key, value: deadLetter.value, headers: stripDeadLetterHeaders(deadLetter.headers) };
}

/** A dead letter as `umw dlq list` shows it. */
export interface DeadLetter {
  /** The original message id (`ce_id`), or the DLQ position when the message had none. */
  readonly id: string;
  /** Where the dead letter sits in the DLQ topic: `<partition>:<offset>`. */
  readonly position: string;
  /** What the command asked for (create_entity, ...), or "?" when the payload does not decode. */
  readonly command: string;
  readonly tenant: string;
  readonly subject: string;
  readonly reason: string;
  readonly error: string;
  readonly attempts: number;
  readonly time: string;
  readonly original: { readonly topic: string; readonly partition: string; readonly offset: string };
  readonly message: IncomingMessage;
}

const COMMAND_TYPE = /^dev\.umw\.command\.([a-z_]+)\.v\d+$/;

export function describeDeadLetter(message: IncomingMessage): DeadLetter {
  const h = message.headers;
  const position = `${message.partition}:${message.offset}`;
  let command = "?";
  let tenant = "";
  let subject = h.ce_subject ?? "";
  try {
    const decoded = fromBinary(CommandSchema, message.value);
    if (decoded.action.case) command = `${decoded.action.case}_entity`;
    tenant = decoded.tenant;
    if (!subject && decoded.action.value) subject = `${decoded.action.value.tenant}/${decoded.action.value.type}/${decoded.action.value.id}`;
  } catch {
    const match = COMMAND_TYPE.exec(h.ce_type ?? "");
    if (match) command = match[1]!;
  }
  return {
    id: h.ce_id || position,
    position,
    command,
    tenant,
    subject,
    reason: h[DLQ_HEADERS.reason] ?? "?",
    error: h[DLQ_HEADERS.message] ?? "",
    attempts: Number(h[DLQ_HEADERS.attempts] ?? 0),
    time: h[DLQ_HEADERS.time] ?? new Date(message.timestamp).toISOString(),
    original: { topic: h[DLQ_HEADERS.topic] ?? "", partition: h[DLQ_HEADERS.partition] ?? "", offset: h[DLQ_HEADERS.offset] ?? "" },
    message,
  };
}
