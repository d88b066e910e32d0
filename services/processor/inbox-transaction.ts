import type { Database, Sql } from "../../runtime/sql.js";

/** Claims a batch's message ids ($2: a JSON array of distinct ids); returns those that were not claimed before. */
export const INBOX_BATCH_SQL = `INSERT INTO umw_inbox (consumer, message_id) SELECT $1, id FROM jsonb_array_elements_text($2::jsonb) AS id
ON CONFLICT DO NOTHING RETURNING message_id`;

const INBOX_SQL = "INSERT INTO umw_inbox (consumer, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING message_id";

/**
 * One transaction that starts by claiming the message in the inbox: `body` runs only when the claim
 * succeeded (else the transaction ends and `duplicate()` is the answer), and the transaction
 * commits when `body` resolves.
 *
 * BEGIN and the claim travel in one round trip where the database adapter can pipeline them
 * (Database.transactionFrom; on Postgres one simple-protocol query of two statements). Each round
 * trip in the transaction is time the whole partition waits (Kafka delivers a partition's messages
 * one after another), and on a busy host one more scheduling wake-up.
 */
export async function inboxTransaction<T, D>(db: Database, consumer: string, messageId: string, body: (tx: Sql) => Promise<T>, duplicate: () => D): Promise<T | D> {
  return db.transactionFrom<unknown, T | D>(INBOX_SQL, [consumer, messageId], async (claimed, tx) => (claimed.rows.length === 0 ? duplicate() : body(tx)));
}
