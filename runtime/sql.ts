import { redactUrl } from "./redact.js";
import pg from "pg";
import type { DbSession } from "./db-session.js";
import { openPgSession } from "./pg-session.js";
import { unavailable } from "./errors.js";
import { withRetry } from "./retry.js";
import type { Logger } from "./logger.js";
import { processReadiness, type Reporter } from "./readiness.js";

export interface QueryResult<R> {
  readonly rows: R[];
  readonly rowCount?: number | null;
}

/** Statements on a SQL database (a pool, one connection, a transaction). */
export interface Sql {
  query<R = Record<string, unknown>>(text: string, params?: unknown[]): Promise<QueryResult<R>>;
}

/**
 * The database port: everything services do with Postgres goes through it, so no service knows the
 * driver. Adapters: `connectPostgres` / `openPostgres` (pg pool, here) and `openPglite` (runtime/pglite.ts).
 */
export interface Database extends Sql {
  /**
   * A statement the driver may keep parsed and planned per connection under `name` (a pg named
   * prepared statement); drivers without that run it as a plain query.
   */
  prepared<R = Record<string, unknown>>(name: string, text: string, params: unknown[]): Promise<QueryResult<R>>;
  /** Runs fn in one transaction: committed when it resolves, rolled back when it throws. */
  transaction<T>(fn: (tx: Sql) => Promise<T>): Promise<T>;
  /**
   * A transaction whose first statement travels with BEGIN in one round trip where the driver can
   * pipeline (pg: one simple-protocol query of two statements, the string `params` inlined as
   * escaped literals). fn gets that statement's result; committed when fn resolves.
   */
  transactionFrom<R, T>(first: string, params: readonly string[], fn: (first: QueryResult<R>, tx: Sql) => Promise<T>): Promise<T>;
  /** One connection held apart (advisory locks, LISTEN): see runtime/db-session.ts. */
  openSession(): Promise<DbSession>;
  close(): Promise<void>;
}

/** Postgres URL without its password, for error messages and logs. */
export { redactUrl };

export interface PostgresOptions {
  readonly url: string;
  /** What this database is to the service ("primary", "replica"), for messages. */
  readonly role: string;
  readonly log: Logger;
  readonly max?: number;
  /** How long to keep trying at start before failing with UNAVAILABLE. */
  readonly connectTimeoutMs?: number;
}

const CONNECTION_SQLSTATE = /^(08|57P0[123]|53300)/;
const CONNECTION_NODE_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN"]);
const CONNECTION_MESSAGES = /connection terminated|timeout exceeded when trying to connect|client has encountered a connection error|connection (?:is )?(?:closed|ended)|cannot use a pool after calling end/i;

/**
 * The error says the connection (or the server behind it) is gone, not that the statement is
 * wrong: a restart (57P01 admin_shutdown), a refused or reset socket, a pool that cannot connect.
 * Such a failure is retryable (UNAVAILABLE for callers).
 */
export function isConnectionError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string" && (CONNECTION_SQLSTATE.test(code) || CONNECTION_NODE_CODES.has(code))) return true;
  return CONNECTION_MESSAGES.test(String((error as Error | null)?.message ?? ""));
}

/**
 * Makes a pool safe against its connections dying, and tells the process's readiness about it.
 *
 * pg-pool listens for 'error' only on idle clients: while a client is checked out (a transaction,
 * a dedicated session) its 'error' (e.g. 57P01 when the server restarts between two statements) has
 * no listener, and an EventEmitter 'error' without one ends the process. So every client the pool
 * opens gets a listener of its own for its whole life; the statement in flight still fails (the
 * caller retries), and pg-pool drops the dead client when it is released.
 */
export function guardPool(pool: pg.Pool, options: { readonly role: string; readonly log: Logger; readonly probeMs?: number }): { readonly health: Reporter; down(error: Error): void; stop(): void } {
  const { log, role } = options;
  const health = processReadiness.reporter("dependency", `postgres ${role}`);
  let down = false;
  let probing: NodeJS.Timeout | undefined;
  let stopped = false;
  const probe = () => {
    if (probing || stopped) return;
    if (pool.ending) {
      stopped = true;
      health.remove();
      return;
    }
    probing = setTimeout(() => {
      pool.query("SELECT 1").then(
        () => {
          probing = undefined;
          if (down) log.info({ role }, "Postgres reachable again");
          down = false;
          health.ready();
        },
        () => {
          probing = undefined;
          probe();
        },
      );
    }, options.probeMs ?? 250);
    probing.unref();
  };
  const lost = (error: Error) => {
    if (stopped) return;
    if (!down) log.warn({ err: error, role }, "Postgres connection lost");
    down = true;
    health.notReady(error.message);
    probe();
  };
  pool.on("connect", (client) => client.on("error", lost));
  pool.on("error", lost);
  return {
    health,
    down: lost,
    stop() {
      stopped = true;
      clearTimeout(probing);
      health.remove();
    },
  };
}

/** A pg.Pool that proves it can reach the server before a service starts on it. */
export async function connectPostgres(options: PostgresOptions): Promise<Database> {
  const pool = new pg.Pool({ connectionString: options.url, max: options.max ?? 10, connectionTimeoutMillis: 3_000 });
  const guard = guardPool(pool, { role: options.role, log: options.log });
  guard.health.notReady("connecting");
  const deadline = Date.now() + (options.connectTimeoutMs ?? 15_000);
  try {
    await withRetry(() => pool.query("SELECT 1"), {
      initialDelayMs: 250,
      maxDelayMs: 1_000,
      deadline,
      onRetry(error) {
        guard.health.notReady((error as Error).message);
        options.log.warn({ role: options.role, url: redactUrl(options.url) }, "Postgres not reachable yet; retrying");
      },
    });
    guard.health.ready();
  } catch (error) {
    guard.stop();
    await pool.end().catch(() => undefined);
    throw unavailable("POSTGRES_UNREACHABLE", `cannot reach Postgres ${options.role} at ${redactUrl(options.url)}: ${(error as Error).message}`);
  }
  return poolDatabase(pool, guard);
}

/**
 * The Database port on a pg pool that is not proven reachable first (the query service starts
 * degraded and reads when the replica comes): guarded like connectPostgres, one connection at most
 * per `max`, `statementTimeoutMs` per statement.
 */
export function openPostgres(options: PostgresOptions & { readonly statementTimeoutMs?: number; readonly applicationName?: string }): Database {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.max ?? 10,
    connectionTimeoutMillis: 2_000,
    query_timeout: options.statementTimeoutMs,
    statement_timeout: options.statementTimeoutMs,
    application_name: options.applicationName,
  });
  pool.on("error", (error) => options.log.warn({ err: error.message, role: options.role }, "idle connection failed"));
  return poolDatabase(pool, guardPool(pool, { role: options.role, log: options.log }));
}

/** Substitutes $n by the escaped literal of params[n-1]: for the pipelined first statement only. */
function inlineLiterals(client: pg.PoolClient, text: string, params: readonly string[]): string {
  return text.replace(/\$(\d+)/g, (_, n: string) => client.escapeLiteral(params[Number(n) - 1]!));
}

/** The Database port on a pg pool the caller made (tests, benchmarks); `close()` ends the pool. */
export function databaseOnPool(pool: pg.Pool): Database {
  return poolDatabase(pool, { down: () => undefined, stop: () => undefined });
}

function poolDatabase(pool: pg.Pool, guard: { down(error: Error): void; stop(): void }): Database {
  /** A failed statement that says the server is gone marks the primary not ready until a probe succeeds. */
  const observe = <T>(promise: Promise<T>): Promise<T> =>
    promise.catch((error: unknown) => {
      if (isConnectionError(error)) guard.down(error as Error);
      throw error;
    });
  const onClient = async <T>(begin: (client: pg.PoolClient) => Promise<T>): Promise<T> => {
    const client = await observe(pool.connect());
    let broken: Error | undefined;
    try {
      const result = await begin(client);
      await client.query("COMMIT");
      return result;
    } catch (error) {
      if (isConnectionError(error)) guard.down(error as Error);
      // A connection that cannot even roll back is dropped, not handed to the next transaction.
      await client.query("ROLLBACK").catch((rollbackError: unknown) => (broken = rollbackError as Error));
      throw error;
    } finally {
      client.release(broken);
    }
  };
  const on = (client: pg.PoolClient): Sql => ({ query: (text, params) => client.query(text, params) as never });
  return {
    query: (text, params) => observe(pool.query(text, params) as never),
    prepared: (name, text, params) => observe(pool.query({ name, text, values: params }) as never),
    transaction: (fn) =>
      onClient(async (client) => {
        await client.query("BEGIN");
        return fn(on(client));
      }),
    transactionFrom: (first, params, fn) =>
      onClient(async (client) => {
        const results = (await client.query(`BEGIN; ${inlineLiterals(client, first, params)}`)) as unknown as pg.QueryResult[];
        return fn(results[1] as never, on(client));
      }),
    openSession: () => observe(openPgSession(pool)),
    async close() {
      guard.stop();
      await pool.end();
    },
  };
}
