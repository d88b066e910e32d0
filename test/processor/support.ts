import type { Database, QueryResult, Sql } from "../../runtime/sql.js";

export { dropKafkaPrefix, runPrefix } from "../support/kafka.js";

/**
 * A Database whose next transactions fail, as an outage or a conflict would: the work runs, then
 * the transaction throws an error with the given SQLSTATE before it commits, so it rolls back.
 * Plain queries (the processor's "mark failed" statement) are not affected.
 */
export interface FlakyDatabase extends Database {
  failNext(count: number, code: string): void;
  readonly injected: number;
  /** Most transactions seen running at the same time. */
  readonly maxConcurrent: number;
}

export function flakyDatabase(inner: Database): FlakyDatabase {
  let remaining = 0;
  let code = "40001";
  let injected = 0;
  let active = 0;
  let maxConcurrent = 0;
  /** Runs a transaction; the work inside it (`run`) throws the injected error after it is done, so it rolls back. */
  async function failing<T>(transaction: (run: (work: () => Promise<T>) => Promise<T>) => Promise<T>): Promise<T> {
    active++;
    maxConcurrent = Math.max(maxConcurrent, active);
    try {
      return await transaction(async (work) => {
        const result = await work();
        if (remaining > 0) {
          remaining--;
          injected++;
          throw Object.assign(new Error(`injected failure ${code}`), { code });
        }
        return result;
      });
    } finally {
      active--;
    }
  }
  return {
    query: (text, params) => inner.query(text, params),
    prepared: (name, text, params) => inner.prepared(name, text, params),
    openSession: () => inner.openSession(),
    transaction: <T>(fn: (tx: Sql) => Promise<T>): Promise<T> => failing((run) => inner.transaction((tx) => run(() => fn(tx)))),
    // The processor claims each message with this one (services/processor/inbox-transaction.ts).
    transactionFrom: <R, T>(first: string, params: readonly string[], fn: (first: QueryResult<R>, tx: Sql) => Promise<T>): Promise<T> =>
      failing((run) => inner.transactionFrom<R, T>(first, params, (result, tx) => run(() => fn(result, tx)))),
    close: () => inner.close(),
    failNext(count, failCode) {
      remaining = count;
      code = failCode;
    },
    get injected() {
      return injected;
    },
    get maxConcurrent() {
      return maxConcurrent;
    },
  };
}
