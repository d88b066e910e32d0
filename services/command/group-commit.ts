import type { Database } from "../../runtime/sql.js";

/** What one unconditional accept needs (the single statement's parameters, minus the preconditions). */
export interface AcceptInput {
  readonly lockId: string;
  readonly tenant: string;
  readonly principal: string;
  readonly key: string;
  readonly fingerprint: string;
  readonly commandId: string;
  readonly response: Buffer;
  readonly type: string;
  readonly entityId: string;
  readonly action: string;
  readonly aggregateId: string;
  readonly eventType: string;
  readonly payload: Buffer;
  readonly headers: string;
}

/** One caller's row of the group statement: the same columns the single accept statement answers. */
export interface GroupAcceptRow {
  locked: boolean | null;
  claimed_until: Date | null;
  fingerprint: string | null;
  response: Buffer | null;
  expires_at: Date | null;
}

/**
 * The single accept statement (command-service.ts ACCEPT_SQL) for many callers at once, one row of
 * `input` per caller: the same steps set-wise (live key → replay or reuse; else the advisory lock
 * on the key's hash; the key row, the command row, the outbox row only where the key was claimed),
 * one statement, one commit. Unconditional writes only (no If-Match and the like), and never two
 * callers with one key in a group (GroupCommit leaves such a caller to the single statement).
 */
const ACCEPT_MANY_SQL = `
WITH input AS MATERIALIZED (
  SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::uuid[], $7::bytea[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::bytea[], $14::text[])
    WITH ORDINALITY AS t(lock_id, tenant, principal, key, fingerprint, command_id, response, type, entity_id, action, aggregateid, event_type, payload, headers, n)
), existing AS MATERIALIZED (
  SELECT i.n, k.fingerprint, k.response, k.expires_at FROM input i
    JOIN umw_idempotency_keys k ON k.tenant = i.tenant AND k.principal = i.principal AND k.key = i.key AND k.expires_at > now()
), lock AS MATERIALIZED (
  SELECT i.n, pg_try_advisory_xact_lock(i.lock_id) AS locked FROM input i WHERE NOT EXISTS (SELECT 1 FROM existing e WHERE e.n = i.n)
), claimed AS (
  INSERT INTO umw_idempotency_keys (tenant, principal, key, fingerprint, command_id, response, expires_at)
  SELECT i.tenant, i.principal, i.key, i.fingerprint, i.command_id, i.response, now() + make_interval(secs => $15::double precision / 1000)
    FROM input i JOIN lock l ON l.n = i.n AND l.locked
  ON CONFLICT (tenant, principal, key) DO UPDATE
    SET fingerprint = EXCLUDED.fingerprint, command_id = EXCLUDED.command_id, response = EXCLUDED.response,
        created_at = now(), expires_at = EXCLUDED.expires_at
    WHERE umw_idempotency_keys.expires_at <= now()
  RETURNING command_id, expires_at
), won AS MATERIALIZED (
  SELECT i.*, c.expires_at FROM input i JOIN claimed c ON c.command_id = i.command_id
), command AS (
  INSERT INTO umw_commands (id, tenant, principal, type, entity_id, action, state)
  SELECT command_id, tenant, principal, type, entity_id, action, 'accepted' FROM won
), outbox AS (
  INSERT INTO umw_outbox (id, aggregatetype, aggregateid, type, topic, payload, headers)
  SELECT command_id, type, aggregateid, event_type, $16, payload, headers::jsonb FROM won ORDER BY n
)
SELECT l.locked, w.expires_at AS claimed_until, e.fingerprint, e.response, e.expires_at
  FROM input i LEFT JOIN lock l ON l.n = i.n LEFT JOIN won w ON w.n = i.n LEFT JOIN existing e ON e.n = i.n
 ORDER BY i.n`;

interface Waiting {
  readonly input: AcceptInput;
  resolve(row: GroupAcceptRow): void;
  reject(error: unknown): void;
}

export interface GroupCommitOptions {
  readonly db: Database;
  /** Topic of the command messages. */
  readonly topic: string;
  readonly ttlMs: number;
  /** Groups in flight at once; a caller arriving while all are in flight joins the next group. */
  readonly maxInFlight: number;
  /** Most callers in one group. */
  readonly maxGroup: number;
  /** The single statement, for a caller that cannot join (its key is already in the group) or whose group failed. */
  readonly single: (input: AcceptInput) => Promise<GroupAcceptRow>;
}

/**
 * Group commit of accepts: a caller arriving while `maxInFlight` groups are in flight waits for
 * one of them to finish and then goes with everyone who arrived meanwhile, in ONE statement (one
 * round trip, one commit). A caller is answered only after the commit of the statement that holds
 * its rows. When a group's statement fails (a constraint error of one caller, a lost connection),
 * every caller of the group is retried on its own with the single statement, so one caller's
 * error is never another's.
 */
export class GroupCommit {
  private readonly queue: Waiting[] = [];
  private inFlight = 0;

  constructor(private readonly options: GroupCommitOptions) {}

  accept(input: AcceptInput): Promise<GroupAcceptRow> {
    return new Promise<GroupAcceptRow>((resolve, reject) => {
      this.queue.push({ input, resolve, reject });
      this.flush();
    });
  }

  private flush(): void {
    while (this.inFlight < this.options.maxInFlight && this.queue.length > 0) {
      const group: Waiting[] = [];
      const keys = new Set<string>();
      const deferred: Waiting[] = [];
      while (this.queue.length > 0 && group.length < this.options.maxGroup) {
        const waiting = this.queue.shift()!;
        const scope = `${waiting.input.tenant}\u0000${waiting.input.principal}\u0000${waiting.input.key}`;
        if (keys.has(scope)) deferred.push(waiting);
        else {
          keys.add(scope);
          group.push(waiting);
        }
      }
      for (const waiting of deferred) this.alone(waiting);
      this.inFlight++;
      void this.run(group).finally(() => {
        this.inFlight--;
        this.flush();
      });
    }
  }

  private alone(waiting: Waiting): void {
    this.options.single(waiting.input).then(waiting.resolve, waiting.reject);
  }

  private async run(group: readonly Waiting[]): Promise<void> {
    if (group.length === 1) {
      await this.options.single(group[0]!.input).then(group[0]!.resolve, group[0]!.reject);
      return;
    }
    const column = <K extends keyof AcceptInput>(name: K) => group.map((waiting) => waiting.input[name]);
    let rows: GroupAcceptRow[];
    try {
      ({ rows } = await this.options.db.prepared<GroupAcceptRow>("umw_accept_commands", ACCEPT_MANY_SQL, [
        column("lockId"),
        column("tenant"),
        column("principal"),
        column("key"),
        column("fingerprint"),
        column("commandId"),
        column("response"),
        column("type"),
        column("entityId"),
        column("action"),
        column("aggregateId"),
        column("eventType"),
        column("payload"),
        column("headers"),
        this.options.ttlMs,
        this.options.topic,
      ]));
    } catch {
      await Promise.all(group.map((waiting) => this.options.single(waiting.input).then(waiting.resolve, waiting.reject)));
      return;
    }
    group.forEach((waiting, i) => waiting.resolve(rows[i]!));
  }
}
