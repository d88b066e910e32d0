import { randomUUID } from "node:crypto";
import { create, fromBinary, toBinary, toJson, type DescMessage, type JsonObject, type MessageShape } from "@bufbuild/protobuf";
import type { FieldMask } from "@bufbuild/protobuf/wkt";
import {
  CommandReceiptSchema,
  CommandService,
  CommandState,
  type CommandReceipt,
  type CommandStatus,
} from "../../gen/umw/v1/command_pb.js";
import { CommandSchema, type Command } from "../../gen/umw/v1/envelope_pb.js";
import type { CallContext } from "../../runtime/call-context.js";
import { cloudEventHeaders, EVENT_TYPES, newEventContext } from "../../runtime/cloudevents.js";
import { checkName, checkType, entityKey } from "../../runtime/entity.js";
import { Code, invalidArgument, notFound, RpcError } from "../../runtime/errors.js";
import { REQUEST_ID_HEADER } from "../../runtime/interceptor-request-id.js";
import { activeTraceContext } from "../../runtime/message-tracing.js";
import type { Logger } from "../../runtime/logger.js";
import { classifyPgError } from "../../runtime/pg-errors.js";
import { OutboxWaker } from "./outbox-waker.js";
import type { Resources } from "../../runtime/resources.js";
import { methodPath, type ServiceHandlers } from "../../runtime/service-definition.js";
import type { Database, QueryResult } from "../../runtime/sql.js";
import type { OpenSession } from "../../runtime/db-session.js";
import { CommandFeed } from "./command-feed.js";
import { COMMAND_COLUMNS, commandStatusFromRow, TERMINAL_STATES, type CommandRow } from "../../runtime/command-status.js";
import {
  EXPIRES_HEADER,
  fingerprint,
  HTTP_STATUS_HEADER,
  IDEMPOTENCY_KEY_HEADER,
  keyInUse,
  keyLockId,
  keyReused,
  parseIdempotencyKey,
  keyOwner,
  REPLAYED_HEADER,
} from "./idempotency.js";
import { PayloadSchemas, type PayloadKind } from "./payload-schema.js";
import { checkMaskPath, checkPayload, DEFAULT_PAYLOAD_LIMITS, type PayloadLimits } from "./payload-limits.js";
import { expectedVersionOf, NO_PRECONDITIONS, preconditionFailed, readPreconditions, type Preconditions } from "./preconditions.js";
import { GroupCommit, type AcceptInput } from "./group-commit.js";
import { checkTenantOfPrincipal } from "../../runtime/tenant-guard.js";

export interface CommandServiceOptions {
  /** The primary: every accepted write is one transaction on it. */
  readonly db: Database;
  readonly resources: Resources;
  /** Topic of the command messages (topicNames(config).commands). */
  readonly topics: { readonly commands: string };
  readonly log: Logger;
  /**
   * Where WatchCommand LISTENs (one shared connection): defaults to a session of `db`
   * (Database.openSession); `false` means polling only.
   */
  readonly listen?: OpenSession | false;
  /** How long a key protects against duplicates (default 24 h). */
  readonly idempotencyTtlMs?: number;
  /** How often expired keys are deleted (default 1 min); 0 disables the sweeper. */
  readonly idempotencySweepMs?: number;
  /** Polling fallback of WatchCommand (default 1 s). */
  readonly watchPollMs?: number;
  /** mTLS peers trusted to assert the principal in x-umw-principal (default: edge). */
  readonly trustedPrincipalPeers?: readonly string[];
  /** CloudEvents `source` of the command messages. */
  readonly source?: string;
  /** Payload depth and size limits (runtime/config.ts payloadMaxDepth, payloadMaxBytes). */
  readonly payloadLimits?: PayloadLimits;
  /** Group commit of unconditional accepts (group-commit.ts); off (false) by default. */
  readonly groupCommit?: { readonly maxInFlight: number; readonly maxGroup: number } | false;
}

export interface CommandServiceImpl {
  readonly handlers: ServiceHandlers<typeof CommandService>;
  /** Starts the shared LISTEN connection and the idempotency-key sweeper. */
  start(): void;
  close(): Promise<void>;
  /** Deletes expired idempotency keys now; resolves with how many. */
  sweepExpiredKeys(): Promise<number>;
}

type Action = Exclude<Command["action"], { case: undefined }>;

interface WriteSpec {
  readonly method: (typeof CommandService.methods)[number];
  readonly request: MessageShape<DescMessage>;
  readonly tenant: string;
  readonly type: string;
  readonly entityId: string;
  readonly action: Action;
  readonly eventType: string;
  readonly payload?: { readonly kind: PayloadKind; readonly data: JsonObject };
  /** The request's expected_version (0: none; creates have none). */
  readonly expectedVersion?: bigint;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Row header carrying the Kafka key (what appendToOutbox in runtime/outbox.ts writes). */
const OUTBOX_KEY_HEADER = "umw-key";

/**
 * Acceptance in ONE statement (one implicit transaction, one round trip):
 * - `existing`: a live key row (same fingerprint: replay; else: reused); nothing else happens;
 * - `current`, `precondition` (only for a conditional write, $17): the entity's version on the
 *   primary, against If-Match / If-None-Match / expected_version; when it fails and no earlier
 *   command of the entity is still pending (one may yet bring it to the expected version; the
 *   processor then decides), nothing is written (412); a replay is answered first, whatever the
 *   entity's version by then;
 * - `lock` (only without a live row): pg_try_advisory_xact_lock on the key's hash, held until
 *   commit: false = a request with this key is still being accepted;
 * - `claimed` (only when locked): the key row (replacing an expired one; the primary key makes the
 *   insert itself the claim);
 * - the command row and the outbox row (runtime/outbox.ts's layout, Kafka key in `umw-key`) only
 *   when `claimed` produced a row.
 * All parts see the statement's snapshot: a row committed after it but before the lock was taken
 * leaves `claimed` empty with nothing existing; the caller then reads the row again.
 */
const ACCEPT_SQL = `
WITH existing AS MATERIALIZED (
  SELECT fingerprint, response, expires_at FROM umw_idempotency_keys
   WHERE tenant = $2 AND principal = $3 AND key = $4 AND expires_at > now()
), current AS MATERIALIZED (
  SELECT version FROM umw_entities WHERE $17::boolean AND tenant = $2 AND type = $9 AND id = $10
), precondition AS MATERIALIZED (
  SELECT NOT (
       ($18::bigint[] IS NOT NULL AND NOT EXISTS (SELECT 1 FROM current WHERE version = ANY($18::bigint[])))
    OR ($19::boolean AND NOT EXISTS (SELECT 1 FROM current))
    OR ($20::boolean AND EXISTS (SELECT 1 FROM current))
    OR ($21::bigint[] IS NOT NULL AND EXISTS (SELECT 1 FROM current WHERE version = ANY($21::bigint[])))
  ) OR EXISTS (
    SELECT 1 FROM umw_commands WHERE $17::boolean AND tenant = $2 AND type = $9 AND entity_id = $10 AND state = 'accepted'
  ) AS ok
), lock AS MATERIALIZED (
  SELECT pg_try_advisory_xact_lock($1::bigint) AS locked
   WHERE NOT EXISTS (SELECT 1 FROM existing) AND (SELECT ok FROM precondition)
), claimed AS (
  INSERT INTO umw_idempotency_keys (tenant, principal, key, fingerprint, command_id, response, expires_at)
  SELECT $2, $3, $4, $5, $6::uuid, $7, now() + make_interval(secs => $8::double precision / 1000)
    FROM lock WHERE lock.locked
  ON CONFLICT (tenant, principal, key) DO UPDATE
    SET fingerprint = EXCLUDED.fingerprint, command_id = EXCLUDED.command_id, response = EXCLUDED.response,
        created_at = now(), expires_at = EXCLUDED.expires_at
    WHERE umw_idempotency_keys.expires_at <= now()
  RETURNING expires_at
), command AS (
  INSERT INTO umw_commands (id, tenant, principal, type, entity_id, action, state)
  SELECT $6::uuid, $2, $3, $9, $10, $11, 'accepted' FROM claimed
), outbox AS (
  INSERT INTO umw_outbox (id, aggregatetype, aggregateid, type, topic, payload, headers)
  SELECT $6::uuid, $9, $12, $13, $14, $15, $16::jsonb FROM claimed
)
SELECT (SELECT locked FROM lock) AS locked, (SELECT expires_at FROM claimed) AS claimed_until,
       (SELECT ok FROM precondition) AS precondition_ok, (SELECT version::text FROM current) AS current_version,
       existing.fingerprint, existing.response, existing.expires_at
  FROM (SELECT 1) AS one LEFT JOIN existing ON true`;

interface AcceptRow {
  locked: boolean | null;
  precondition_ok: boolean;
  current_version: string | null;
  claimed_until: Date | null;
  fingerprint: string | null;
  response: Buffer | null;
  expires_at: Date | null;
}

export function statusUrl(tenant: string, commandId: string): string {
  return `/v1/tenants/${encodeURIComponent(tenant)}/commands/${commandId}`;
}

/**
 * CommandService: a write is validated (names, resource type, JSON Schema), then accepted in ONE
 * transaction on the primary (one statement, ACCEPT_SQL) that claims the idempotency key, records
 * the command, and appends the command message to the outbox; the relay is woken after commit
 * (OutboxWaker). The answer is a receipt (202) pointing at GetCommand.
 *
 * Idempotency (draft-ietf-httpapi-idempotency-key-header-06), per (tenant, principal, key):
 * - a live (committed, unexpired) row with the same fingerprint → the stored receipt,
 *   `idempotent-replayed: true`; another fingerprint → FAILED_PRECONDITION IDEMPOTENCY_KEY_REUSED (422);
 * - else `pg_try_advisory_xact_lock(hash(scope, key))`: held by a transaction still accepting the
 *   same key → ABORTED IDEMPOTENCY_KEY_IN_USE (409) at once, without waiting;
 * - else the key row is inserted (replacing an expired one): the insert, guarded by the primary
 *   key, is what claims the key; if it finds a row committed after this statement's snapshot, the
 *   row is read again and answered as above.
 */
export function createCommandService(options: CommandServiceOptions): CommandServiceImpl {
  const { db, log } = options;
  const schemas = new PayloadSchemas(options.resources, log);
  const ttlMs = options.idempotencyTtlMs ?? 86_400_000;
  const sweepMs = options.idempotencySweepMs ?? 60_000;
  const pollMs = options.watchPollMs ?? 1_000;
  const trustedPeers = new Set(options.trustedPrincipalPeers ?? ["edge"]);
  const source = options.source ?? "/umw/command";
  const listen = options.listen ?? (() => db.openSession());
  const feed = listen === false ? undefined : new CommandFeed(listen, log);
  let sweeper: NodeJS.Timeout | undefined;
  const waker = new OutboxWaker(db, log);
  const payloadLimits = options.payloadLimits ?? DEFAULT_PAYLOAD_LIMITS;
  const group =
    options.groupCommit === false || options.groupCommit === undefined
      ? undefined
      : new GroupCommit({
          db,
          topic: options.topics.commands,
          ttlMs,
          ...options.groupCommit,
          single: (input) => acceptOne(input, NO_PRECONDITIONS, false),
        });

  async function write(spec: WriteSpec, ctx: CallContext): Promise<{ receipt: CommandReceipt }> {
    checkTenantOfPrincipal(ctx, spec.tenant, trustedPeers);
    const key = parseIdempotencyKey(ctx.headers[IDEMPOTENCY_KEY_HEADER]);
    checkName("tenant", spec.tenant);
    checkType(spec.type);
    schemas.checkType(spec.type);
    checkName("id", spec.entityId);
    if (spec.payload) {
      checkPayload(spec.payload.data, payloadLimits);
      schemas.validate(spec.type, spec.payload.kind, spec.payload.data);
    }
    const preconditions = readPreconditions(ctx.headers, spec.expectedVersion ?? 0n);
    const conditional = preconditions.versions !== undefined || preconditions.mustExist || preconditions.mustNotExist || preconditions.notVersions !== undefined;
    // Several acceptable versions: the processor enforces one, the one the entity is at now.
    const expectedVersion = expectedVersionOf(preconditions) ?? (await currentVersion(spec)) ?? 0n;
    const action = spec.action.case === "create" ? spec.action : ({ case: spec.action.case, value: { ...spec.action.value, expectedVersion } } as Action);

    const principal = keyOwner(ctx, trustedPeers);
    const path = methodPath(spec.method);
    const request = toJson(spec.method.input, spec.request);
    const print = fingerprint(path, preconditions.headers ? { request, preconditions: preconditions.headers } : request);
    const commandId = randomUUID();
    const receipt = create(CommandReceiptSchema, {
      commandId,
      state: CommandState.ACCEPTED,
      statusUrl: statusUrl(spec.tenant, commandId),
      entityId: spec.entityId,
    });
    const context = newEventContext({
      id: commandId,
      source,
      type: spec.eventType,
      subject: entityKey(spec.tenant, spec.type, spec.entityId),
      ...activeTraceContext(ctx.headers),
    });
    const command = create(CommandSchema, { context, tenant: spec.tenant, principal, idempotencyKey: key, action });

    const input: AcceptInput = {
      lockId: keyLockId(spec.tenant, principal, key),
      tenant: spec.tenant,
      principal,
      key,
      fingerprint: print,
      commandId,
      response: Buffer.from(toBinary(CommandReceiptSchema, receipt)),
      type: spec.type,
      entityId: spec.entityId,
      action: action.case,
      aggregateId: entityKey(spec.tenant, spec.type, spec.entityId),
      eventType: spec.eventType,
      payload: Buffer.from(toBinary(CommandSchema, command)),
      headers: JSON.stringify({ ...cloudEventHeaders(context), [REQUEST_ID_HEADER]: ctx.requestId, "umw-command-id": commandId, "umw-tenant": spec.tenant, [OUTBOX_KEY_HEADER]: entityKey(spec.tenant, spec.type, spec.entityId) }),
    };
    const outcome = await guard(log, async () => {
      const row: AcceptRow = conditional || !group ? await acceptOne(input, preconditions, conditional) : { ...(await group.accept(input)), precondition_ok: true, current_version: null };
      if (row.claimed_until) return { receipt, expiresAt: row.claimed_until, replayed: false };
      if (row.fingerprint !== null) return answerStored(row, print);
      if (!row.precondition_ok) throw preconditionFailed(preconditions, row.current_version === null ? null : BigInt(row.current_version));
      if (!row.locked) throw keyInUse();
      // Committed by another request after this statement's snapshot, before it took the lock.
      const again = await db.query<{ fingerprint: string; response: Buffer; expires_at: Date }>(
        "SELECT fingerprint, response, expires_at FROM umw_idempotency_keys WHERE tenant = $1 AND principal = $2 AND key = $3 AND expires_at > now()",
        [spec.tenant, principal, key],
      );
      if (!again.rows[0]) throw keyInUse();
      return answerStored(again.rows[0], print);
    });

    if (!outcome.replayed) waker.wake();
    ctx.setHeader(HTTP_STATUS_HEADER, "202");
    ctx.setHeader("location", outcome.receipt.statusUrl);
    ctx.setHeader(EXPIRES_HEADER, outcome.expiresAt.toUTCString());
    if (outcome.replayed) ctx.setHeader(REPLAYED_HEADER, "true");
    return { receipt: outcome.receipt };
  }

  /** ACCEPT_SQL for one caller, in a statement of its own. */
  async function acceptOne(input: AcceptInput, preconditions: Preconditions, conditional: boolean): Promise<AcceptRow> {
    const { rows } = await prepared<AcceptRow>(db, "umw_accept_command", ACCEPT_SQL, [
      input.lockId,
      input.tenant,
      input.principal,
      input.key,
      input.fingerprint,
      input.commandId,
      input.response,
      ttlMs,
      input.type,
      input.entityId,
      input.action,
      input.aggregateId,
      input.eventType,
      options.topics.commands,
      input.payload,
      input.headers,
      conditional,
      preconditions.versions?.map(String) ?? null,
      preconditions.mustExist,
      preconditions.mustNotExist,
      preconditions.notVersions?.map(String) ?? null,
    ]);
    return rows[0]!;
  }

  async function currentVersion(spec: WriteSpec): Promise<bigint | undefined> {
    const { rows } = await guard(log, () =>
      db.query<{ version: string }>("SELECT version::text AS version FROM umw_entities WHERE tenant = $1 AND type = $2 AND id = $3", [spec.tenant, spec.type, spec.entityId]),
    );
    return rows[0] ? BigInt(rows[0].version) : undefined;
  }

  function answerStored(row: { fingerprint: string | null; response: Buffer | null; expires_at: Date | null }, print: string) {
    if (row.fingerprint !== print) throw keyReused();
    return { receipt: fromBinary(CommandReceiptSchema, row.response!), expiresAt: row.expires_at!, replayed: true };
  }

  async function loadCommand(tenant: string, commandId: string): Promise<CommandStatus> {
    const { rows } = await guard(log, () => prepared<CommandRow>(
      db,
      "umw_get_command",
      `SELECT ${COMMAND_COLUMNS} FROM umw_commands WHERE id = $1 AND tenant = $2`,
      [commandId, tenant],
    ));
    const row = rows[0];
    if (!row) throw notFound("COMMAND_NOT_FOUND", `no command ${commandId} in tenant ${tenant}`, { tenant, command_id: commandId });
    return commandStatusFromRow(row);
  }

  function checkCommandRef(tenant: string, commandId: string): void {
    checkName("tenant", tenant);
    if (!UUID.test(commandId)) throw invalidArgument("INVALID_COMMAND_ID", `command_id ${JSON.stringify(commandId)} is not a UUID`, { field: "command_id" });
  }

  async function sweepExpiredKeys(): Promise<number> {
    let total = 0;
    for (;;) {
      const result = await db.query(
        `DELETE FROM umw_idempotency_keys WHERE (tenant, principal, key) IN (
           SELECT tenant, principal, key FROM umw_idempotency_keys
            WHERE expires_at <= now() ORDER BY expires_at LIMIT 5000 FOR UPDATE SKIP LOCKED)`,
      );
      const count = result.rowCount ?? 0;
      total += count;
      if (count < 5000) return total;
    }
  }

  const handlers: ServiceHandlers<typeof CommandService> = {
    async createEntity(request, ctx) {
      const id = request.id === "" ? randomUUID() : request.id;
      const data = request.data ?? {};
      return write(
        {
          method: CommandService.method.createEntity,
          request,
          tenant: request.tenant,
          type: request.type,
          entityId: id,
          action: { case: "create", value: { ...request, id, data } },
          eventType: EVENT_TYPES.createEntity,
          payload: { kind: "full", data },
        },
        ctx,
      );
    },
    async updateEntity(request, ctx) {
      checkExpectedVersion(request.expectedVersion);
      const data = request.data ?? {};
      return write(
        {
          method: CommandService.method.updateEntity,
          request,
          tenant: request.tenant,
          type: request.type,
          entityId: request.id,
          action: { case: "update", value: { ...request, data } },
          expectedVersion: request.expectedVersion,
          eventType: EVENT_TYPES.updateEntity,
          payload: { kind: "full", data },
        },
        ctx,
      );
    },
    async patchEntity(request, ctx) {
      checkExpectedVersion(request.expectedVersion);
      checkUpdateMask(request.updateMask);
      const data = request.data ?? {};
      return write(
        {
          method: CommandService.method.patchEntity,
          request,
          tenant: request.tenant,
          type: request.type,
          entityId: request.id,
          action: { case: "patch", value: { ...request, data } },
          expectedVersion: request.expectedVersion,
          eventType: EVENT_TYPES.patchEntity,
          payload: { kind: "patch", data },
        },
        ctx,
      );
    },
    async deleteEntity(request, ctx) {
      checkExpectedVersion(request.expectedVersion);
      return write(
        {
          method: CommandService.method.deleteEntity,
          request,
          tenant: request.tenant,
          type: request.type,
          entityId: request.id,
          action: { case: "delete", value: request },
          expectedVersion: request.expectedVersion,
          eventType: EVENT_TYPES.deleteEntity,
        },
        ctx,
      );
    },
    async getCommand(request, ctx) {
      checkTenantOfPrincipal(ctx, request.tenant, trustedPeers);
      checkCommandRef(request.tenant, request.commandId);
      return { command: await loadCommand(request.tenant, request.commandId) };
    },
    async *watchCommand(request, ctx) {
      checkTenantOfPrincipal(ctx, request.tenant, trustedPeers);
      checkCommandRef(request.tenant, request.commandId);
      // Attach before the first read: a change between read and wait is not missed.
      const watch = feed?.watch(request.commandId);
      try {
        let last = "";
        for (;;) {
          const status = await loadCommand(request.tenant, request.commandId);
          const fingerprintOfState = `${status.state}/${status.version}/${status.updateTime?.seconds}/${status.updateTime?.nanos}`;
          if (fingerprintOfState !== last) {
            last = fingerprintOfState;
            yield { command: status };
          }
          if (TERMINAL_STATES.has(status.state) || ctx.signal.aborted) return;
          if (watch) await watch.next(pollMs, ctx.signal);
          else await sleep(pollMs, ctx.signal);
          if (ctx.signal.aborted) return;
        }
      } finally {
        watch?.close();
      }
    },
  };

  return {
    handlers,
    start() {
      feed?.start();
      if (sweepMs > 0 && !sweeper) {
        sweeper = setInterval(() => {
          sweepExpiredKeys().then(
            (count) => count && log.info({ count }, "swept expired idempotency keys"),
            (error: unknown) => log.warn({ err: error }, "idempotency key sweep failed; retrying at the next tick"),
          );
        }, sweepMs);
        sweeper.unref();
      }
    },
    async close() {
      clearInterval(sweeper);
      sweeper = undefined;
      await feed?.close();
    },
    sweepExpiredKeys,
  };
}

function checkExpectedVersion(version: bigint): void {
  if (version < 0n) throw invalidArgument("INVALID_EXPECTED_VERSION", "expected_version must be 0 (any) or a positive version", { field: "expected_version" });
}

function checkUpdateMask(mask: FieldMask | undefined): void {
  for (const path of mask?.paths ?? []) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/.test(path)) {
      throw invalidArgument("INVALID_UPDATE_MASK", `update_mask path ${JSON.stringify(path)} is not a field path`, { field: "update_mask" });
    }
    checkMaskPath(path);
  }
}

/** A named prepared statement (Database.prepared): Postgres parses and plans it once per connection. */
function prepared<R>(db: Database, name: string, text: string, values: unknown[]): Promise<QueryResult<R>> {
  return db.prepared<R>(name, text, values);
}

/**
 * Database failures as the caller should see them (runtime/pg-errors.ts): the primary unreachable,
 * restarting, demoted or timing out → UNAVAILABLE (retry; with the same idempotency key a retry is
 * safe); a serialization failure, deadlock or lock timeout → ABORTED; anything else stays INTERNAL
 * (logged by the server).
 */
async function guard<T>(log: Logger, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    if (error instanceof RpcError) throw error;
    const kind = classifyPgError(error);
    if (kind === "conflict") {
      throw new RpcError(Code.ABORTED, "TRANSACTION_CONFLICT", "the write conflicted with another one; retry with the same idempotency key");
    }
    if (kind === "connection" || kind === "failover" || kind === "timeout") {
      log.warn({ err: error }, "primary database unavailable");
      // Retry-After: the edge answers 503 with it, so clients back off instead of hammering (a restart takes seconds).
      throw new RpcError(Code.UNAVAILABLE, "DATABASE_UNAVAILABLE", "the primary database is unavailable; retry later (with the same idempotency key for writes)", {}, { "retry-after": "1" });
    }
    throw error;
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
