import type { Database, Sql } from "../../runtime/sql.js";

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
  return {
    query: (text, params) => inner.query(text, params),
    async transaction<T>(fn: (tx: Sql) => Promise<T>): Promise<T> {
      active++;
      maxConcurrent = Math.max(maxConcurrent, active);
      try {
        return await inner.transaction(async (tx) => {
          const result = await fn(tx);
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
    },
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
