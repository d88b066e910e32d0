import type { EventBus, OutgoingMessage, TopicSpec } from "../../runtime/bus.js";
import type { RelayMetrics } from "./relay-metrics.js";
import type { Logger } from "../../runtime/logger.js";
import type { Sql } from "../../runtime/sql.js";
import { OUTBOX_CHANNEL } from "../../runtime/outbox.js";
import { withRetry } from "../../runtime/retry.js";
import type { DbSession as PgSession, OpenSession } from "../../runtime/db-session.js";
import type { Database } from "../../runtime/sql.js";

/** Kafka header naming the outbox row (= the message id consumers dedup on). */
export const OUTBOX_ID_HEADER = "umw-outbox-id";
/** Row header that carries the Kafka key; not forwarded to Kafka. */
export const KEY_HEADER = "umw-key";

export interface OutboxRelayOptions {
  /**
   * The primary (a Database), from which the relay takes one session (Database.openSession) that
   * holds the leader lock, LISTENs, reads and marks rows; or a function opening such a session.
   */
  readonly db: Pick<Database, "openSession"> | OpenSession;
  readonly bus: EventBus;
  /** Created before the first publish (existing topics are left as they are). */
  readonly topics: readonly TopicSpec[];
  readonly log: Logger;
  /** Where things are, for error messages: e.g. "Postgres primary at postgres://umw:***@host/db". */
  readonly postgresLabel?: string;
  readonly kafkaLabel?: string;
  /** Rows read and published per round. */
  readonly batchSize?: number;
  /** Bytes (payloads + headers) published per round, at least one row: keeps requests under the broker's limit. */
  readonly maxBatchBytes?: number;
  /** Polling fallback when no NOTIFY arrives. */
  readonly pollMs?: number;
  /** How often a standby tries to take the lock. */
  readonly lockRetryMs?: number;
  /** Published rows older than this are deleted. */
  readonly retentionMs?: number;
  readonly pruneEveryMs?: number;
  /** First and longest pause after a failed round (doubles in between). */
  readonly retryMinMs?: number;
  readonly retryMaxMs?: number;
  /** Advisory lock key: one leader per outbox (advisory locks are per database). */
  readonly lockName?: string;
  /** Published rows, publish lag and leadership (services/relay/relay-metrics.ts); none by default. */
  readonly metrics?: RelayMetrics;
}

export type RelayRole = "starting" | "connecting" | "standby" | "leader" | "stopped";

export interface RelayStatus {
  readonly role: RelayRole;
  /** Backend pid of the session (leader's lock connection), when connected. */
  readonly sessionPid: number | undefined;
  readonly published: number;
  readonly pruned: number;
  /** The last failure, naming what failed and where; cleared by the next good round. */
  readonly lastError: string | undefined;
  readonly lastErrorAt: Date | undefined;
}

export interface OutboxRelay {
  start(): void;
  /** Graceful: finishes the round in flight, releases the lock. */
  stop(): Promise<void>;
  /** Abrupt: drops the session (and the lock) without finishing anything, like a crash would. */
  kill(): Promise<void>;
  status(): RelayStatus;
  /** Resolves when this relay holds the lock (for tests and readiness). */
  whenLeader(signal?: AbortSignal): Promise<void>;
}

interface OutboxRecord {
  seq: string;
  id: string;
  topic: string;
  aggregateid: string;
  payload: Buffer;
  headers: Record<string, string> | null;
  /** Seconds since the row's commit, when it was read. */
  age: number;
}

class SessionLost extends Error {}
/** Another relay holds the lock: stand by and try again. */
class LockHeld extends Error {}

/**
 * The outbox relay: one leader per outbox (session-level `pg_try_advisory_lock` on a dedicated
 * connection: the lock lives exactly as long as that connection), standbys retry at most
 * `lockRetryMs` apart (runtime/retry.ts, jittered). The leader reads unpublished rows in `seq` order, publishes each topic's share in
 * that order (key from `umw-key`, so one entity's messages keep their order), marks them after the
 * broker's ack, and prunes old published rows. A crash between ack and mark re-sends: consumers
 * dedup by `umw-outbox-id` / `ce_id`.
 */
export function createOutboxRelay(options: OutboxRelayOptions): OutboxRelay {
  const log = options.log.child({ component: "relay" });
  const batchSize = options.batchSize ?? 500;
  const maxBatchBytes = options.maxBatchBytes ?? 900_000;
  const pollMs = options.pollMs ?? 500;
  const lockRetryMs = options.lockRetryMs ?? 1_000;
  const retentionMs = options.retentionMs ?? 3_600_000;
  const pruneEveryMs = options.pruneEveryMs ?? Math.min(60_000, Math.max(1_000, Math.floor(retentionMs / 10)));
  const retryMinMs = options.retryMinMs ?? 250;
  const retryMaxMs = options.retryMaxMs ?? 5_000;
  const lockName = options.lockName ?? "umw_outbox_relay";
  const postgresLabel = options.postgresLabel ?? "Postgres";
  const kafkaLabel = options.kafkaLabel ?? "the message bus";

  const openSession = typeof options.db === "function" ? options.db : () => (options.db as Pick<Database, "openSession">).openSession();
  const stopping = new AbortController();
  let role: RelayRole = "starting";
  let session: PgSession | undefined;
  let published = 0;
  let pruned = 0;
  let lastError: string | undefined;
  let lastErrorAt: Date | undefined;
  let topicsReady = false;
  let running: Promise<void> | undefined;
  let wake: () => void = () => undefined;
  let pending = true;
  /** Seqs of the rows the broker acknowledged, to be marked published (with the next read). */
  let toMark: string[] = [];
  const leaderWaiters = new Set<() => void>();

  const setRole = (next: RelayRole) => {
    if (role === next) return;
    log.info({ from: role, to: next }, next === "leader" ? "relay is leader" : `relay is ${next}`);
    role = next;
    options.metrics?.leader.set(next === "leader" ? 1 : 0);
    if (next === "leader") for (const resolve of leaderWaiters) resolve();
  };

  const fail = (what: string, error: unknown) => {
    const message = `${what}: ${(error as Error)?.message ?? String(error)}`;
    if (message !== lastError) log.error({ err: error }, message);
    lastError = message;
    lastErrorAt = new Date();
  };

  const recovered = () => {
    if (lastError) log.info({ previous: lastError }, "relay recovered");
    lastError = undefined;
    lastErrorAt = undefined;
  };

  /** Cuts the current pause short: set while a pause is in progress. */
  let interrupt: (() => void) | undefined;
  stopping.signal.addEventListener("abort", () => interrupt?.(), { once: true });

  /** Sleeps up to ms, or until woken (NOTIFY, when wakeable), the session is lost, or the relay stops. */
  const pause = (ms: number, wakeable: boolean) =>
    new Promise<void>((resolve) => {
      if (stopping.signal.aborted || session?.isLost || (wakeable && pending)) return resolve();
      const timer = setTimeout(done, ms);
      interrupt = done;
      if (wakeable) wake = done;
      function done() {
        clearTimeout(timer);
        interrupt = undefined;
        wake = () => undefined;
        resolve();
      }
    });

  async function connect(): Promise<PgSession | undefined> {
    setRole("connecting");
    try {
      const opened = await withRetry(() => openSession(), {
        initialDelayMs: retryMinMs,
        maxDelayMs: retryMaxMs,
        onRetry: (error) => fail(`cannot reach ${postgresLabel}; retrying with backoff`, error),
        signal: stopping.signal,
      });
      recovered();
      return opened;
    } catch {
      return undefined; // stopping
    }
  }

  async function run(): Promise<void> {
    while (!stopping.signal.aborted) {
      const current = await connect();
      if (!current) break;
      session = current;
      void current.lost.then(() => interrupt?.());
      try {
        await campaign(current);
      } catch (error) {
        if (!stopping.signal.aborted) {
          fail(current.isLost ? `lost the connection to ${postgresLabel}` : `relay failed on ${postgresLabel}`, error);
        }
      } finally {
        const wasLeader = role === "leader";
        session = undefined;
        if (!stopping.signal.aborted) setRole("connecting");
        if (wasLeader && !current.isLost) await current.query("SELECT pg_advisory_unlock(hashtextextended($1, 0))", [lockName]).catch(() => undefined);
        await current.release();
      }
      if (!stopping.signal.aborted) await pause(retryMinMs, false);
    }
    setRole("stopped");
  }

  /** Standby until the lock is ours, then lead until the session is lost or the relay stops. */
  async function campaign(current: PgSession): Promise<void> {
    const lost = new AbortController();
    void current.lost.then(() => lost.abort(new SessionLost(role === "leader" ? "leader connection lost" : "connection lost while standing by")));
    const connected = AbortSignal.any([stopping.signal, lost.signal]);
    // The standby's polls: capped at lockRetryMs (jittered below it), so a takeover never waits longer.
    await withRetry(
      async () => {
        const { rows } = await current.query<{ locked: boolean }>("SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS locked", [lockName]);
        if (rows[0]?.locked) return;
        setRole("standby");
        throw new LockHeld();
      },
      { initialDelayMs: lockRetryMs, maxDelayMs: lockRetryMs, shouldRetry: (error) => error instanceof LockHeld, signal: connected },
    );
    pending = true;
    await current.listen(OUTBOX_CHANNEL, () => {
      pending = true;
      wake();
    });
    setRole("leader");
    let lastPrune = 0;
    toMark = [];
    while (!stopping.signal.aborted) {
      if (current.isLost) throw new SessionLost("leader connection lost");
      const full = await withRetry(
        async () => {
          const more = await round(current);
          if (Date.now() - lastPrune >= pruneEveryMs) {
            lastPrune = Date.now();
            await prune(current);
          }
          return more;
        },
        {
          initialDelayMs: retryMinMs,
          maxDelayMs: retryMaxMs,
          shouldRetry: (error) => error instanceof BusError && !current.isLost,
          onRetry: (error) => fail(`${(error as BusError).message}; rows stay unpublished, retrying with backoff`, (error as BusError).cause),
          signal: connected,
        },
      );
      if (!full) await pause(pollMs, true);
    }
    // Stopping: the last round's rows are marked before the lock goes (else the next leader re-sends them).
    if (toMark.length && !current.isLost) await mark(current);
  }

  /** Marks the rows the broker acknowledged and not yet marked (MARK_PUBLISHED_SQL). */
  async function mark(current: PgSession): Promise<void> {
    const acked = toMark;
    toMark = [];
    await current.query(MARK_PUBLISHED_SQL, [acked]);
    published += acked.length;
  }

  /**
   * One round: mark the previous round's rows and read (one statement), publish every topic's
   * share. True when something was published: its mark goes with the next read, so the loop reads
   * again at once rather than pausing.
   */
  async function round(current: PgSession): Promise<boolean> {
    pending = false;
    // The previous round's mark and this round's read travel together (one round trip, not two).
    const marking = toMark;
    toMark = [];
    const { rows } = marking.length
      ? await current.query<OutboxRecord>(MARK_AND_READ_SQL, [batchSize, marking])
      : await current.query<OutboxRecord>(READ_SQL, [batchSize]);
    published += marking.length;
    if (rows.length === 0) {
      recovered();
      return false;
    }
    if (!topicsReady) {
      try {
        await options.bus.ensureTopics(options.topics);
      } catch (error) {
        throw new BusError(`cannot create topics on ${kafkaLabel}`, error);
      }
      topicsReady = true;
    }
    // Seq order, cut at the byte budget: what is left goes out next round.
    let bytes = 0;
    let take = 0;
    while (take < rows.length) {
      const row = rows[take]!;
      bytes += row.payload.length + JSON.stringify(row.headers ?? {}).length;
      if (take > 0 && bytes > maxBatchBytes) break;
      take++;
    }
    const batch = rows.slice(0, take);
    const byTopic = new Map<string, OutboxRecord[]>();
    for (const row of batch) {
      let list = byTopic.get(row.topic);
      if (!list) byTopic.set(row.topic, (list = []));
      list.push(row);
    }
    // Every topic's share at once (each in seq order, so one entity's messages keep their order),
    // then one mark for all that the broker acked.
    const topics = [...byTopic];
    const outcomes = await Promise.allSettled(topics.map(([topic, list]) => options.bus.publish(topic, list.map(toMessage))));
    let failure: BusError | undefined;
    const acked: string[] = [];
    const readAt = performance.now();
    outcomes.forEach((outcome, i) => {
      const [topic, list] = topics[i]!;
      if (outcome.status === "fulfilled") {
        for (const row of list) acked.push(row.seq);
        if (options.metrics) {
          const sinceRead = (performance.now() - readAt) / 1000;
          options.metrics.published.inc({ topic }, list.length);
          for (const row of list) options.metrics.lag.observe(row.age + sinceRead);
        }
      }
      else failure ??= new BusError(`cannot publish ${list.length} message(s) to ${topic} on ${kafkaLabel}`, outcome.reason);
    });
    // Acked by the broker: marked with the next round's read, which follows at once. If the session
    // dies first, the next leader re-sends these rows (consumers dedup).
    toMark = acked;
    if (failure) {
      options.metrics?.publishFailures.inc();
      if (toMark.length) await mark(current);
      throw failure;
    }
    recovered();
    return true;
  }

  async function prune(current: PgSession): Promise<void> {
    for (;;) {
      const result = await withoutFlush(current, (tx) =>
        tx.query(
          `DELETE FROM umw_outbox WHERE seq IN (
           SELECT seq FROM umw_outbox
            WHERE published_at IS NOT NULL AND published_at < now() - make_interval(secs => $1::double precision / 1000)
            ORDER BY seq LIMIT 5000)`,
          [retentionMs],
        ),
      );
      const count = result.rowCount ?? 0;
      pruned += count;
      if (count > 0) log.debug({ count }, "pruned published outbox rows");
      if (count < 5000 || stopping.signal.aborted) return;
    }
  }

  return {
    start() {
      running ??= run().catch((error: unknown) => {
        log.fatal({ err: error }, "relay loop crashed");
        setRole("stopped");
      });
    },
    async stop() {
      stopping.abort();
      await running;
      setRole("stopped");
    },
    async kill() {
      stopping.abort();
      const current = session;
      session = undefined;
      await current?.release();
      await running;
      setRole("stopped");
    },
    status: () => ({ role, sessionPid: session?.pid, published, pruned, lastError, lastErrorAt }),
    whenLeader(signal) {
      if (role === "leader") return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const onAbort = () => {
          leaderWaiters.delete(done);
          reject(signal?.reason);
        };
        const done = () => {
          leaderWaiters.delete(done);
          signal?.removeEventListener("abort", onAbort);
          resolve();
        };
        if (signal?.aborted) return onAbort();
        leaderWaiters.add(done);
        signal?.addEventListener("abort", onAbort, { once: true });
      });
    },
  };
}

/**
 * The mark, in one round trip, committing without waiting for the WAL flush (see withoutFlush for
 * why that is safe): `set_config(…, true)` is local to the statement's own implicit transaction,
 * whose commit it governs, so nothing else on the session is affected (a `SET LOCAL` outside a
 * transaction block would be ignored; BEGIN / SET LOCAL / UPDATE / COMMIT cost four round trips,
 * each a wait for every row that arrives meanwhile).
 */
const MARK_PUBLISHED_SQL = `UPDATE umw_outbox SET published_at = now()
  FROM (SELECT set_config('synchronous_commit', 'off', true)) AS no_flush
 WHERE seq = ANY($1::bigint[])`;

const OUTBOX_COLUMNS = "seq, id::text AS id, topic, aggregateid, payload, headers, extract(epoch FROM now() - created_at)::float8 AS age";
/** The unpublished rows in seq order. */
const READ_SQL = `SELECT ${OUTBOX_COLUMNS} FROM umw_outbox WHERE published_at IS NULL ORDER BY seq LIMIT $1`;
/**
 * The mark ($2, as MARK_PUBLISHED_SQL) and the next read in one statement: the read sees the
 * snapshot from before the mark, hence leaves the marked rows out by their seq.
 */
const MARK_AND_READ_SQL = `WITH marked AS (${MARK_PUBLISHED_SQL.replace("$1", "$2")})
SELECT ${OUTBOX_COLUMNS} FROM umw_outbox WHERE published_at IS NULL AND seq <> ALL($2::bigint[]) ORDER BY seq LIMIT $1`;

/**
 * Runs the relay's own bookkeeping (prunes) in a transaction that commits without waiting
 * for the WAL flush: a mark lost in a crash re-sends its rows, which consumers dedup, exactly as a
 * crash between the broker's ack and the mark does, so a round is one fsync shorter, and so is the
 * wait of every row that arrives meanwhile. `SET LOCAL` ends with the transaction: the setting
 * never reaches anyone else's writes, even where the session is a shared connection (PGlite in the
 * embedded mode, where a session-wide `SET synchronous_commit = off` made every acknowledged write
 * of the process volatile until a clean close).
 */
function withoutFlush<T>(session: PgSession, fn: (tx: Sql) => Promise<T>): Promise<T> {
  return session.transaction(async (tx) => {
    await tx.query("SET LOCAL synchronous_commit = off");
    return fn(tx);
  });
}

class BusError extends Error {
  constructor(message: string, override readonly cause: unknown) {
    super(message);
  }
}

function toMessage(row: OutboxRecord): OutgoingMessage {
  const { [KEY_HEADER]: key, ...headers } = row.headers ?? {};
  return {
    key: key ?? row.aggregateid,
    value: row.payload,
    headers: { ...headers, [OUTBOX_ID_HEADER]: row.id },
  };
}
