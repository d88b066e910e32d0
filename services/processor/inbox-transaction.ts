import pg from "pg";
import type { Database, Sql } from "../../runtime/sql.js";

const INBOX_SQL = "INSERT INTO umw_inbox (consumer, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING message_id";

/**
 * One transaction that starts by claiming the message in the inbox: `body` runs only when the claim
 * succeeded (else the transaction ends and `duplicate()` is the answer), and the transaction
 * commits when `body` resolves.
 *
 * On a pg pool (connectPostgres) BEGIN and the claim travel in one round trip: a simple-protocol
 * query of two statements, with the two values as literals escaped by pg. Each round trip in the
 * transaction is time the whole partition waits (Kafka delivers a partition's messages one after
 * another), and on a busy host one more scheduling wake-up. Elsewhere (PGlite, test doubles) it
 * goes through Database.transaction.
 */
export async function inboxTransaction<T, D>(db: Database, consumer: string, messageId: string, body: (tx: Sql) => Promise<T>, duplicate: () => D): Promise<T | D> {
  const pool = (db as Partial<{ pool: pg.Pool }>).pool;
  if (!(pool instanceof pg.Pool)) {
    return db.transaction(async (tx) => {
      const claimed = await tx.query(INBOX_SQL, [consumer, messageId]);
      return claimed.rows.length === 0 ? duplicate() : body(tx);
    });
  }
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    const results = (await client.query(
      `BEGIN; INSERT INTO umw_inbox (consumer, message_id) VALUES (${client.escapeLiteral(consumer)}, ${client.escapeLiteral(messageId)}) ON CONFLICT DO NOTHING RETURNING message_id`,
    )) as unknown as pg.QueryResult[];
    if (results[1]!.rows.length === 0) {
      await client.query("ROLLBACK");
      return duplicate();
    }
    const result = await body({ query: (text, params) => client.query(text, params) as never });
    await client.query("COMMIT");
    return result;
  } catch (error) {
    // A connection that cannot even roll back is dropped, not handed to the next transaction.
    await client.query("ROLLBACK").catch((rollbackError: unknown) => (broken = rollbackError as Error));
    throw error;
  } finally {
    client.release(broken);
  }
}
