import pg from "pg";
import { unavailable } from "./errors.js";
import type { Logger } from "./logger.js";

export interface QueryResult<R> {
  readonly rows: R[];
  readonly rowCount?: number | null;
}

/** What services need of a SQL database: pg.Pool, a pg client and PGlite all fit. */
export interface Sql {
  query<R = Record<string, unknown>>(text: string, params?: unknown[]): Promise<QueryResult<R>>;
}

export interface Database extends Sql {
  /** Runs fn in one transaction: committed when it resolves, rolled back when it throws. */
  transaction<T>(fn: (tx: Sql) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** Postgres URL without its password, for error messages and logs. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return "<invalid url>";
  }
}

export interface PostgresOptions {
  readonly url: string;
  /** What this database is to the service ("primary", "replica"), for messages. */
  readonly role: string;
  readonly log: Logger;
  readonly max?: number;
  /** How long to keep trying at start before failing with UNAVAILABLE. */
  readonly connectTimeoutMs?: number;
}

/** A pg.Pool that proves it can reach the server before a service starts on it. */
export async function connectPostgres(options: PostgresOptions): Promise<Database & { readonly pool: pg.Pool }> {
  const pool = new pg.Pool({ connectionString: options.url, max: options.max ?? 10, connectionTimeoutMillis: 3_000 });
  pool.on("error", (error) => options.log.warn({ err: error, role: options.role }, "idle Postgres connection failed"));
  const deadline = Date.now() + (options.connectTimeoutMs ?? 15_000);
  for (;;) {
    try {
      await pool.query("SELECT 1");
      break;
    } catch (error) {
      if (Date.now() > deadline) {
        await pool.end().catch(() => undefined);
        throw unavailable("POSTGRES_UNREACHABLE", `cannot reach Postgres ${options.role} at ${redactUrl(options.url)}: ${(error as Error).message}`);
      }
      options.log.warn({ role: options.role, url: redactUrl(options.url) }, "Postgres not reachable yet; retrying");
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
  return {
    pool,
    query: (text, params) => pool.query(text, params) as never,
    async transaction(fn) {
      const client = await pool.connect();
      try {
        await client.query("BEGIN");
        const result = await fn({ query: (text, params) => client.query(text, params) as never });
        await client.query("COMMIT");
        return result;
      } catch (error) {
        await client.query("ROLLBACK").catch(() => undefined);
        throw error;
      } finally {
        client.release();
      }
    },
    close: () => pool.end(),
  };
}
