import type { Sql } from "./sql.js";

/** Channel the outbox relay LISTENs on; NOTIFY in the writing transaction is delivered on commit. */
export const OUTBOX_CHANNEL = "umw_outbox";
/** Channel carrying a command id whenever that command's state changes. */
export const COMMAND_CHANNEL = "umw_command";

export interface OutboxRow {
  /** The message id: CloudEvents id, Kafka dedup key of every consumer's inbox. */
  readonly id: string;
  /** Debezium outbox columns: what the message is about and what kind of message it is. */
  readonly aggregatetype: string;
  readonly aggregateid: string;
  readonly type: string;
  readonly topic: string;
  /** Kafka key: tenant/type/id, so one entity's messages stay in order. */
  readonly key: string;
  readonly payload: Uint8Array;
  readonly headers: Readonly<Record<string, string>>;
}

/**
 * Adds a message to the outbox inside the caller's transaction: it is published if and only if
 * the transaction commits. The Kafka key travels in the headers (`umw-key`).
 */
export async function appendToOutbox(tx: Sql, row: OutboxRow): Promise<void> {
  await tx.query(
    `INSERT INTO umw_outbox (id, aggregatetype, aggregateid, type, topic, payload, headers)
     VALUES ($1, $2, $3, $4, $5, $6, $7)`,
    [row.id, row.aggregatetype, row.aggregateid, row.type, row.topic, Buffer.from(row.payload), JSON.stringify({ ...row.headers, "umw-key": row.key })],
  );
  await tx.query(`SELECT pg_notify('${OUTBOX_CHANNEL}', '')`);
}
