import { create, createRegistry, fromBinary, toBinary, toJson, type JsonValue } from "@bufbuild/protobuf";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";
import { ChangeKind, CommandSchema, DomainEventSchema, type Command } from "../../gen/umw/v1/envelope_pb.js";
import { plainBatch, type EventBus, type IncomingMessage, type MessageBatch, type Subscription } from "../../runtime/bus.js";
import { cloudEventHeaders, EVENT_TYPES, newEventContext } from "../../runtime/cloudevents.js";
import { entityKey } from "../../runtime/entity.js";
import { Code, RpcError } from "../../runtime/errors.js";
import { REQUEST_ID_HEADER } from "../../runtime/interceptor-request-id.js";
import { currentMessageScope } from "../../runtime/log-context.js";
import type { Logger } from "../../runtime/logger.js";
import { activeTraceContext } from "../../runtime/message-tracing.js";
import { COMMAND_CHANNEL } from "../../runtime/outbox.js";
import { pgErrorCodeOf } from "../../runtime/pg-errors.js";
import type { Resources } from "../../runtime/resources.js";
import { withRetry } from "../../runtime/retry.js";
import type { Database, Sql } from "../../runtime/sql.js";
import type { topicNames } from "../../runtime/topics.js";
import { applyAction, applyCommonAtOnce, SchemaCheck, type ApplyResult, type CommandAction } from "./apply.js";
import { deadLetterMessage, type DeadLetterCause, type DeadLetterReason } from "./dead-letter.js";
import { classifyFailure, DEFAULT_BACKOFF, type BackoffOptions } from "./failures.js";
import { INBOX_BATCH_SQL, inboxTransaction } from "./inbox-transaction.js";
import { CommitNotifier } from "./notifier.js";

export type Topics = ReturnType<typeof topicNames>;

export interface ProcessorDeps {
  /** The primary: every message is one transaction here. */
  readonly db: Database;
  readonly bus: EventBus;
  readonly topics: Topics;
  readonly log: Logger;
  /** Resource types: their JSON Schema is checked against the new state (patches included). */
  readonly resources?: Resources;
  /** Largest entity state, encoded as google.protobuf.Struct (runtime/config.ts payloadMaxBytes). */
  readonly payloadMaxBytes?: number;
  /** Consumer group on the commands topic. */
  readonly group?: string;
  /** Name in `umw_inbox.consumer`. */
  readonly consumer?: string;
  /** CloudEvents `source` of the domain events. */
  readonly source?: string;
  /** Attempts at a message that keeps failing before it is dead-lettered (default 5). */
  readonly maxAttempts?: number;
  readonly backoff?: BackoffOptions;
  /** Most commands of one partition applied in one transaction (default 200; 1 = one transaction per message). */
  readonly batchSize?: number;
  /** Called with what became of each message (metrics, tests). */
  readonly onOutcome?: (outcome: Outcome, message: IncomingMessage) => void;
}

export type Outcome =
  | { readonly kind: "applied"; readonly commandId: string; readonly change: ChangeKind; readonly version: bigint; readonly eventId: string }
  | { readonly kind: "rejected"; readonly commandId: string; readonly error: RpcError }
  | { readonly kind: "duplicate"; readonly messageId: string }
  | { readonly kind: "dead-lettered"; readonly commandId?: string; readonly reason: DeadLetterReason; readonly attempts: number };

export interface Processor {
  /** Subscribes to the commands topic; resolves once the consumer runs. */
  start(): Promise<void>;
  /** Processes one message to its end (applied, rejected, duplicate or dead-lettered) in its own transaction. */
  handle(message: IncomingMessage): Promise<Outcome>;
  /** Processes consecutive messages of one partition, in one transaction where it can (what the bus calls); outcomes in message order. */
  handleBatch(batch: MessageBatch | readonly IncomingMessage[]): Promise<Outcome[]>;
  /** Stops consuming; a message waiting for a retry is abandoned (and redelivered later). */
  stop(): Promise<void>;
}

export const DEFAULT_PROCESSOR_GROUP = "umw-processor";
export const DEFAULT_INBOX_CONSUMER = "umw-processor";
export const DEFAULT_MAX_ATTEMPTS = 5;
export const DEFAULT_BATCH_SIZE = 200;

/** google.rpc.Status JSON, as stored in `umw_commands.error`: Any details need the registry. */
const STATUS_REGISTRY = createRegistry(ErrorInfoSchema);
export function statusJson(error: RpcError): JsonValue {
  return toJson(StatusSchema, error.toStatus(), { registry: STATUS_REGISTRY });
}

class PoisonMessage extends Error {
  constructor(
    readonly reason: DeadLetterReason,
    message: string,
    readonly commandId?: string,
  ) {
    super(message);
  }
}

class Stopped extends Error {
  constructor() {
    super("processor stopping; the message will be redelivered");
  }
}

interface Decoded {
  readonly messageId: string;
  readonly commandId: string;
  readonly command: Command;
  readonly action: CommandAction;
}

const errorText = (error: unknown) => (error instanceof Error ? error.message : String(error));

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The domain events of a transaction, in runtime/outbox.ts's layout (the Kafka key in the `umw-key`
 * header), without their NOTIFY (the relay is woken after the commit: CommitNotifier), and the new
 * state of their commands: one statement at the end of the transaction for all of them, rather
 * than one round trip per command while the partition waits. The events keep their order (the
 * sequence is drawn row by row in `n` order), so one entity's events keep theirs on Kafka.
 */
const INSERT_EVENTS_AND_APPLY_SQL = `WITH event AS (
  INSERT INTO umw_outbox (id, aggregatetype, aggregateid, type, topic, payload, headers)
  SELECT id, aggregatetype, aggregateid, type, topic, payload, headers::jsonb
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::text[])
      WITH ORDINALITY AS e(id, aggregatetype, aggregateid, type, topic, payload, headers, n)
   ORDER BY n
)
UPDATE umw_commands AS c SET state = 'applied', version = a.version, error = NULL, update_time = now()
  FROM unnest($8::uuid[], $9::bigint[]) AS a(id, version) WHERE c.id = a.id`;

/** What an applied command leaves for the end of its transaction (INSERT_EVENTS_AND_APPLY_SQL). */
interface AppliedRow {
  readonly event: readonly [id: string, aggregateType: string, aggregateId: string, type: string, topic: string, payload: Buffer, headers: string];
  /** The command's id and new entity version, when the id is a UUID (a command row can exist). */
  readonly command?: readonly [id: string, version: string];
}

/** Writes the transaction's events and applied commands in one statement (nothing to do when there are none). */
async function writeApplied(tx: Sql, applied: readonly AppliedRow[]): Promise<void> {
  if (applied.length === 0) return;
  const column = <T>(pick: (row: AppliedRow) => T) => applied.map(pick);
  const commands = applied.flatMap((row) => (row.command ? [row.command] : []));
  await tx.query(INSERT_EVENTS_AND_APPLY_SQL, [
    ...Array.from({ length: 7 }, (_, i) => column((row) => row.event[i])),
    commands.map(([id]) => id),
    commands.map(([, version]) => version),
  ]);
}

const EVENT_TYPE_OF: Record<ChangeKind, string> = {
  [ChangeKind.UNSPECIFIED]: "",
  [ChangeKind.CREATED]: EVENT_TYPES.entityCreated,
  [ChangeKind.UPDATED]: EVENT_TYPES.entityUpdated,
  [ChangeKind.DELETED]: EVENT_TYPES.entityDeleted,
};

/**
 * Reads a message of the commands topic. The message id (inbox key) is the CloudEvents `ce_id`
 * header, else the envelope's context id; the command id is the envelope's context id (the command
 * service makes it the command's id, its outbox row id and so `ce_id`).
 */
function decode(message: IncomingMessage): Decoded {
  const headerId = message.headers.ce_id || undefined;
  let command: Command;
  try {
    command = fromBinary(CommandSchema, message.value);
  } catch (error) {
    throw new PoisonMessage("UNDECODABLE", `not a umw.v1.Command: ${(error as Error).message}`, headerId);
  }
  const commandId = command.context?.id || headerId;
  const messageId = headerId ?? commandId;
  if (!messageId || !commandId) throw new PoisonMessage("INVALID_COMMAND", "the message has neither a ce_id header nor a context id");
  const action = command.action;
  if (!action.case) throw new PoisonMessage("INVALID_COMMAND", "the command has no action", commandId);
  const { tenant, type, id } = action.value;
  if (!tenant || !type) throw new PoisonMessage("INVALID_COMMAND", `the ${action.case} action names no tenant or type`, commandId);
  if (command.tenant && command.tenant !== tenant) throw new PoisonMessage("INVALID_COMMAND", `envelope tenant ${command.tenant} differs from the action's ${tenant}`, commandId);
  if (!id && action.case !== "create") throw new PoisonMessage("INVALID_COMMAND", `the ${action.case} action names no entity id`, commandId);
  return { messageId, commandId, command, action };
}

/** The request id of the command being applied travels on with its domain event. */
function requestIdHeader(): Record<string, string> {
  const requestId = currentMessageScope()?.requestId;
  return requestId ? { [REQUEST_ID_HEADER]: requestId } : {};
}

/** The processor: applies each command exactly once in effect, and dead-letters what it cannot. */
export function createProcessor(deps: ProcessorDeps): Processor {
  const log = deps.log.child({ component: "processor" });
  const consumer = deps.consumer ?? DEFAULT_INBOX_CONSUMER;
  const source = deps.source ?? "/umw/processor";
  const maxAttempts = Math.max(1, deps.maxAttempts ?? DEFAULT_MAX_ATTEMPTS);
  const batchSize = Math.max(1, deps.batchSize ?? DEFAULT_BATCH_SIZE);
  const backoff = deps.backoff ?? DEFAULT_BACKOFF;
  const schemas = new SchemaCheck(deps.resources, deps.payloadMaxBytes);
  const stopping = new AbortController();
  /** The bus already delivers one partition in order; this keeps it so for any bus adapter. */
  const partitionTails = new Map<string, Promise<unknown>>();
  let subscription: Subscription | undefined;
  const notifier = new CommitNotifier(deps.db, log);

  async function markRejected(tx: Sql, commandId: string, error: RpcError): Promise<void> {
    if (!UUID.test(commandId)) return;
    await tx.query(`UPDATE umw_commands SET state = 'rejected', version = NULL, error = $2::jsonb, update_time = now() WHERE id = $1`, [
      commandId,
      JSON.stringify(statusJson(error)),
    ]);
  }

  /**
   * One transaction: inbox, effect, domain event in the outbox, command status; then, after the
   * commit, the notifications (the relay's wake-up, the command's new state).
   */
  async function applyOnce(decoded: Decoded): Promise<Outcome> {
    const { commandId } = decoded;
    const outcome = await transactOnce(decoded);
    announce([{ commandId, outcome }]);
    return outcome;
  }

  /** After a commit: wake the relay when a domain event was written, announce each command whose state changed. */
  function announce(committed: readonly { readonly commandId: string; readonly outcome: Outcome }[]): void {
    let outbox = false;
    const commandIds: string[] = [];
    for (const { commandId, outcome } of committed) {
      if (outcome.kind !== "applied" && outcome.kind !== "rejected") continue;
      if (outcome.kind === "applied") outbox = true;
      if (UUID.test(commandId)) commandIds.push(commandId);
    }
    if (outbox || commandIds.length) notifier.committed({ outbox, commandIds });
  }

  /**
   * A partition's batch in ONE transaction: every message claimed in the inbox by one statement
   * (those already there are duplicates, and so is a second copy inside the batch), then the
   * creates and updates of distinct entities by one statement (applyCommonAtOnce) and every other
   * claimed command one by one in offset order (so one entity's commands keep their order), the
   * events and the commands' states by one statement at the end; one commit for all. One attempt: any error rolls the whole
   * batch back and the caller falls back to one transaction per message, with its retries and
   * dead letters.
   */
  async function applyBatchOnce(batch: MessageBatch, decoded: readonly { readonly message: IncomingMessage; readonly decoded: Decoded }[]): Promise<Outcome[]> {
    const ids = JSON.stringify([...new Set(decoded.map((each) => each.decoded.messageId))]);
    const outcomes = await deps.db.transactionFrom<{ message_id: string }, Outcome[]>(INBOX_BATCH_SQL, [consumer, ids], async (claimed, tx) => {
      const unclaimed = new Set(claimed.rows.map((row) => row.message_id));
      const toApply = decoded.map((each) => unclaimed.delete(each.decoded.messageId));
      const applying = decoded.filter((_, i) => toApply[i]);
      // The creates and updates of distinct entities in one statement; the rest one by one below, in message order.
      const common = await applyCommonAtOnce(tx, applying.map(({ decoded: each }) => ({ action: each.action, fallbackId: each.commandId })), schemas);
      const results: Outcome[] = [];
      const applied: AppliedRow[] = [];
      let next = 0;
      for (const [i, { message, decoded: each }] of decoded.entries()) {
        if (!toApply[i]) {
          results.push({ kind: "duplicate", messageId: each.messageId });
          continue;
        }
        const done = common[next++];
        results.push(await batch.within(message, () => applyInTransaction(tx, each, applied, done)));
      }
      await writeApplied(tx, applied);
      return results;
    });
    announce(decoded.map((each, i) => ({ commandId: each.decoded.commandId, outcome: outcomes[i]! })));
    return outcomes;
  }

  async function transactOnce(decoded: Decoded): Promise<Outcome> {
    return inboxTransaction(
      deps.db,
      consumer,
      decoded.messageId,
      async (tx) => {
        const applied: AppliedRow[] = [];
        const outcome = await applyInTransaction(tx, decoded, applied);
        await writeApplied(tx, applied);
        return outcome;
      },
      () => ({ kind: "duplicate", messageId: decoded.messageId }) as const,
    );
  }

  /**
   * The effect in the caller's transaction (the inbox claim made; `done` when applyCommonAtOnce
   * already applied it); the domain event and the
   * command's new state go into `applied`, which the caller writes before it commits (writeApplied).
   */
  async function applyInTransaction(tx: Sql, decoded: Decoded, applied: AppliedRow[], done?: ApplyResult): Promise<Outcome> {
    const { commandId, command, action } = decoded;
    const result = done ?? (await applyAction(tx, action, commandId, schemas));
    if (!result.ok) {
      await markRejected(tx, commandId, result.error);
      return { kind: "rejected", commandId, error: result.error } as const;
    }
    const { entity, kind } = result;
    const key = entityKey(entity.tenant, entity.type, entity.id);
    const context = newEventContext({
      source,
      type: EVENT_TYPE_OF[kind],
      subject: key,
      ...activeTraceContext({ traceparent: command.context?.traceparent, tracestate: command.context?.tracestate }),
    });
    const event = create(DomainEventSchema, { context, commandId, kind, entity });
    applied.push({
      event: [
        context.id,
        entity.type,
        key,
        context.type,
        deps.topics.entityEvents,
        Buffer.from(toBinary(DomainEventSchema, event)),
        JSON.stringify({ ...cloudEventHeaders(context), ...requestIdHeader(), "umw-key": key }),
      ],
      ...(UUID.test(commandId) && { command: [commandId, entity.version.toString()] as const }),
    });
    return { kind: "applied", commandId, change: kind, version: entity.version, eventId: context.id } as const;
  }

  /**
   * Marks the command failed (only if it is still merely accepted: a redelivered duplicate of an
   * applied command must not turn it failed), then parks the message on the DLQ. Both must succeed
   * before the offset may advance; when the database is down the first throws, the bus redelivers
   * later, and an outage never floods the DLQ.
   */
  async function deadLetter(message: IncomingMessage, cause: DeadLetterCause, commandId: string | undefined): Promise<Outcome> {
    if (commandId && UUID.test(commandId)) {
      const error = new RpcError(
        cause.reason === "RETRIES_EXHAUSTED" ? Code.UNAVAILABLE : Code.INTERNAL,
        "COMMAND_DEAD_LETTERED",
        "the command could not be applied and was set aside as a dead letter for an operator to replay",
        { cause: cause.reason, attempts: String(cause.attempts) },
      );
      await deps.db.query(
        `WITH failed AS (
           UPDATE umw_commands SET state = 'failed', error = $2::jsonb, update_time = now()
           WHERE id = $1 AND state = 'accepted' RETURNING id)
         SELECT pg_notify('${COMMAND_CHANNEL}', id::text) FROM failed`,
        [commandId, JSON.stringify(statusJson(error))],
      );
    }
    await deps.bus.publish(deps.topics.commandsDlq, [deadLetterMessage(message, cause)]);
    log.error(
      { topic: message.topic, partition: message.partition, offset: message.offset.toString(), commandId, reason: cause.reason, attempts: cause.attempts, error: cause.message },
      "message dead-lettered",
    );
    return { kind: "dead-lettered", commandId, reason: cause.reason, attempts: cause.attempts };
  }

  async function process(message: IncomingMessage): Promise<Outcome> {
    let decoded: Decoded;
    try {
      decoded = decode(message);
    } catch (error) {
      if (!(error instanceof PoisonMessage)) throw error;
      return deadLetter(message, { reason: error.reason, message: error.message, attempts: 1, consumer }, error.commandId);
    }
    let attempts = 0;
    try {
      const outcome = await withRetry(
        (attempt) => {
          attempts = attempt;
          return applyOnce(decoded);
        },
        {
          initialDelayMs: backoff.initialMs,
          maxDelayMs: backoff.maxMs,
          maxAttempts,
          shouldRetry: (error) => classifyFailure(error) !== "permanent",
          onRetry: (error, attempt, delay) =>
            log.warn(
              { commandId: decoded.commandId, attempt, kind: classifyFailure(error), code: pgErrorCodeOf(error), err: errorText(error), retryInMs: delay },
              "applying a command failed; retrying",
            ),
          signal: stopping.signal,
        },
      );
      if (outcome.kind === "rejected") log.info({ commandId: decoded.commandId, reason: outcome.error.reason }, "command rejected");
      else if (outcome.kind === "duplicate") log.debug({ messageId: decoded.messageId }, "duplicate message skipped");
      return outcome;
    } catch (error) {
      if (stopping.signal.aborted) throw new Stopped();
      const reason = classifyFailure(error) === "permanent" ? "PERMANENT_ERROR" : "RETRIES_EXHAUSTED";
      const cause = { reason, message: errorText(error), code: pgErrorCodeOf(error), attempts, consumer } as const;
      return deadLetter(message, cause, decoded.commandId);
    }
  }

  /**
   * A batch of one partition: the decodable messages in one transaction (applyBatchOnce), then the
   * undecodable ones dead-lettered. When the transaction fails, every message goes the one-by-one
   * way (process) in offset order: a poison message is dead-lettered there as it always was and
   * the others are applied, each exactly once (the inbox).
   */
  async function processBatch(batch: MessageBatch): Promise<Outcome[]> {
    const { messages } = batch;
    if (messages.length === 1) return [await batch.within(messages[0]!, () => process(messages[0]!))];
    const decodable: { message: IncomingMessage; decoded: Decoded }[] = [];
    for (const message of messages) {
      try {
        decodable.push({ message, decoded: decode(message) });
      } catch (error) {
        if (!(error instanceof PoisonMessage)) throw error;
      }
    }
    const outcomes = new Map<IncomingMessage, Outcome>();
    if (decodable.length > 0) {
      try {
        const applied = await applyBatchOnce(batch, decodable);
        decodable.forEach(({ message }, i) => outcomes.set(message, applied[i]!));
      } catch (error) {
        if (stopping.signal.aborted) throw new Stopped();
        log.warn(
          { messages: messages.length, partition: messages[0]!.partition, kind: classifyFailure(error), code: pgErrorCodeOf(error), err: errorText(error) },
          "applying a batch failed; applying its messages one by one",
        );
        const results: Outcome[] = [];
        for (const message of messages) results.push(await batch.within(message, () => process(message)));
        return results;
      }
    }
    const results: Outcome[] = [];
    for (const message of messages) results.push(outcomes.get(message) ?? (await batch.within(message, () => process(message))));
    return results;
  }

  /** Runs `work` after everything before it on the same partition (lanes keep a partition serial whatever the bus does). */
  function inLane<T>(message: IncomingMessage, work: () => Promise<T>): Promise<T> {
    const lane = `${message.topic}\u0000${message.partition}`;
    const previous = partitionTails.get(lane) ?? Promise.resolve();
    const next = work;
    const run = previous.then(next, next);
    const tail = run.catch(() => undefined);
    partitionTails.set(lane, tail);
    void tail.then(() => {
      if (partitionTails.get(lane) === tail) partitionTails.delete(lane);
    });
    return run;
  }

  function handle(message: IncomingMessage): Promise<Outcome> {
    return inLane(message, async () => {
      const outcome = await process(message);
      deps.onOutcome?.(outcome, message);
      return outcome;
    });
  }

  function handleBatch(batch: MessageBatch | readonly IncomingMessage[]): Promise<Outcome[]> {
    const messages: MessageBatch = "within" in batch ? batch : plainBatch(batch);
    if (messages.messages.length === 0) return Promise.resolve([]);
    return inLane(messages.messages[0]!, async () => {
      const outcomes = await processBatch(messages);
      if (deps.onOutcome) messages.messages.forEach((message, i) => deps.onOutcome!(outcomes[i]!, message));
      return outcomes;
    });
  }

  return {
    handle,
    handleBatch,
    async start() {
      subscription = await deps.bus.subscribeBatch({
        topics: [deps.topics.commands],
        group: deps.group ?? DEFAULT_PROCESSOR_GROUP,
        fromBeginning: true,
        maxBatchSize: batchSize,
        handleBatch: async (batch) => {
          await handleBatch(batch);
        },
      });
      log.info({ topic: deps.topics.commands, group: deps.group ?? DEFAULT_PROCESSOR_GROUP, maxAttempts, batchSize }, "processor consuming");
    },
    async stop() {
      stopping.abort();
      await subscription?.stop();
      subscription = undefined;
    },
  };
}
