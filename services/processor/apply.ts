import type { JsonObject } from "@bufbuild/protobuf";
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import type { Command } from "../../gen/umw/v1/envelope_pb.js";
import { ChangeKind } from "../../gen/umw/v1/envelope_pb.js";
import type { Entity } from "../../gen/umw/v1/entity_pb.js";
import { entityFromRow, type EntityRow } from "../../runtime/entity.js";
import { Code, RpcError } from "../../runtime/errors.js";
import type { Resources } from "../../runtime/resources.js";
import type { Sql } from "../../runtime/sql.js";
import { DEFAULT_PAYLOAD_LIMITS, structSize } from "../command/payload-limits.js";
import { applyFieldMask, FieldMaskError, mergePatchObject, ReservedKeyError } from "./merge-patch.js";

/** What a command did to its entity: a change to announce, or a refusal to record. */
export type ApplyResult =
  | { readonly ok: true; readonly kind: ChangeKind; readonly entity: Entity }
  | { readonly ok: false; readonly error: RpcError };

export type CommandAction = Exclude<Command["action"], { case: undefined }>;

const ENTITY_COLUMNS = "tenant, type, id, version, data, create_time, update_time";

/**
 * Validates the new state of an entity: its size (a patch can grow an entity past the payload
 * limit, which CommandService checks on each payload alone) and its resource type's JSON Schema,
 * if one is declared.
 */
export class SchemaCheck {
  private readonly ajv = new Ajv2020({ allErrors: true, strict: false });
  private readonly compiled = new Map<string, ValidateFunction>();

  constructor(
    private readonly resources: Resources = {},
    private readonly maxBytes = DEFAULT_PAYLOAD_LIMITS.maxBytes,
  ) {}

  /** A rejection listing the offending paths, or undefined when the data is valid. */
  check(type: string, data: JsonObject): RpcError | undefined {
    const size = structSize(data);
    if (size > this.maxBytes) {
      return new RpcError(Code.INVALID_ARGUMENT, "PAYLOAD_TOO_LARGE", `the resulting ${type} is ${size} bytes encoded; the limit is ${this.maxBytes}`, {
        type,
        size: String(size),
        max_bytes: String(this.maxBytes),
      });
    }
    const resource = this.resources[type];
    if (!resource) return undefined;
    let validate = this.compiled.get(type);
    if (!validate) this.compiled.set(type, (validate = this.ajv.compile(resource.schema)));
    if (validate(data)) return undefined;
    const problems = (validate.errors ?? []).map((error) => `${error.instancePath || "/"} ${error.message ?? "is invalid"}`);
    return new RpcError(Code.INVALID_ARGUMENT, "SCHEMA_VIOLATION", `the resulting ${type} does not match its schema: ${problems.join("; ")}`, {
      type,
      paths: [...new Set((validate.errors ?? []).map((error) => error.instancePath || "/"))].join(","),
    });
  }
}

/**
 * Applies one command's action to `umw_entities` inside the caller's transaction, with optimistic
 * concurrency. The row is locked (FOR UPDATE) so a concurrent writer of the same entity waits.
 */
export async function applyAction(tx: Sql, action: CommandAction, fallbackId: string, schemas: SchemaCheck): Promise<ApplyResult> {
  const { tenant, type } = action.value;
  const id = action.value.id || fallbackId;
  const where = [tenant, type, id] as const;
  const meta = { tenant, type, id };

  if (action.case === "create") {
    const data = action.value.data ?? {};
    const invalid = schemas.check(type, data);
    if (invalid) return { ok: false, error: invalid };
    const { rows } = await tx.query<EntityRow>(
      `WITH deleted AS (DELETE FROM umw_entity_tombstones WHERE tenant = $1 AND type = $2 AND id = $3 RETURNING version)
       INSERT INTO umw_entities (tenant, type, id, version, data)
       VALUES ($1, $2, $3, COALESCE((SELECT version FROM deleted), 0) + 1, $4::jsonb)
       ON CONFLICT (tenant, type, id) DO NOTHING RETURNING ${ENTITY_COLUMNS}`,
      [...where, JSON.stringify(data)],
    );
    const row = rows[0];
    if (!row) return { ok: false, error: new RpcError(Code.ALREADY_EXISTS, "ENTITY_ALREADY_EXISTS", `${type} ${id} already exists in tenant ${tenant}`, meta) };
    return { ok: true, kind: ChangeKind.CREATED, entity: entityFromRow(row) };
  }

  // The common cases in one statement: the entity exists at the expected version (or any, when 0).
  // Anything else falls through to the general path below, which finds the exact reason.
  const expectedVersion = action.value.expectedVersion.toString();
  if (action.case === "update") {
    const data = action.value.data ?? {};
    if (!schemas.check(type, data)) {
      const { rows } = await tx.query<EntityRow>(
        `UPDATE umw_entities SET data = $4::jsonb, version = version + 1, update_time = now()
          WHERE tenant = $1 AND type = $2 AND id = $3 AND ($5::bigint = 0 OR version = $5::bigint) RETURNING ${ENTITY_COLUMNS}`,
        [...where, JSON.stringify(data), expectedVersion],
      );
      if (rows[0]) return { ok: true, kind: ChangeKind.UPDATED, entity: entityFromRow(rows[0]) };
    }
  } else if (action.case === "delete") {
    const { rows } = await tx.query<EntityRow>(
      `WITH gone AS (
         DELETE FROM umw_entities WHERE tenant = $1 AND type = $2 AND id = $3 AND ($4::bigint = 0 OR version = $4::bigint) RETURNING ${ENTITY_COLUMNS}
       ), fence AS (
         INSERT INTO umw_entity_tombstones (tenant, type, id, version) SELECT tenant, type, id, version + 1 FROM gone
         ON CONFLICT (tenant, type, id) DO UPDATE SET version = EXCLUDED.version, deleted_at = now()
       )
       SELECT ${ENTITY_COLUMNS} FROM gone`,
      [...where, expectedVersion],
    );
    if (rows[0]) return { ok: true, kind: ChangeKind.DELETED, entity: deletedEntity(rows[0]) };
  }

  const { rows: current } = await tx.query<EntityRow>(`SELECT ${ENTITY_COLUMNS} FROM umw_entities WHERE tenant = $1 AND type = $2 AND id = $3 FOR UPDATE`, [...where]);
  const existing = current[0];
  if (!existing) return { ok: false, error: new RpcError(Code.NOT_FOUND, "ENTITY_NOT_FOUND", `${type} ${id} does not exist in tenant ${tenant}`, meta) };
  const version = BigInt(existing.version);
  const expected = action.value.expectedVersion;
  if (expected !== 0n && expected !== version) {
    return {
      ok: false,
      error: new RpcError(Code.FAILED_PRECONDITION, "VERSION_CONFLICT", `${type} ${id} is at version ${version}, not the expected ${expected}`, {
        ...meta,
        expected_version: expected.toString(),
        current_version: version.toString(),
      }),
    };
  }

  if (action.case === "delete") {
    await tx.query("DELETE FROM umw_entities WHERE tenant = $1 AND type = $2 AND id = $3", [...where]);
    await tx.query(
      `INSERT INTO umw_entity_tombstones (tenant, type, id, version) VALUES ($1, $2, $3, $4)
       ON CONFLICT (tenant, type, id) DO UPDATE SET version = EXCLUDED.version, deleted_at = now()`,
      [...where, (version + 1n).toString()],
    );
    return { ok: true, kind: ChangeKind.DELETED, entity: deletedEntity(existing) };
  }

  let data: JsonObject;
  if (action.case === "update") {
    data = action.value.data ?? {};
  } else {
    const paths = action.value.updateMask?.paths ?? [];
    try {
      data = paths.length ? applyFieldMask(existing.data, action.value.data ?? {}, paths) : mergePatchObject(existing.data, action.value.data ?? {});
    } catch (error) {
      if (error instanceof FieldMaskError) return { ok: false, error: new RpcError(Code.INVALID_ARGUMENT, "INVALID_UPDATE_MASK", error.message, { ...meta, path: error.path }) };
      if (error instanceof ReservedKeyError) return { ok: false, error: new RpcError(Code.INVALID_ARGUMENT, "RESERVED_KEY", error.message, { ...meta, key: error.key }) };
      throw error;
    }
  }
  const invalid = schemas.check(type, data);
  if (invalid) return { ok: false, error: invalid };
  const { rows } = await tx.query<EntityRow>(
    `UPDATE umw_entities SET data = $4::jsonb, version = version + 1, update_time = now()
     WHERE tenant = $1 AND type = $2 AND id = $3 RETURNING ${ENTITY_COLUMNS}`,
    [...where, JSON.stringify(data)],
  );
  return { ok: true, kind: ChangeKind.UPDATED, entity: entityFromRow(rows[0]!) };
}

/** The deletion's event entity: the row as it was, at the deletion's version, without data. */
function deletedEntity(row: EntityRow): Entity {
  const entity = entityFromRow({ ...row, version: BigInt(row.version) + 1n, data: {}, update_time: new Date() });
  entity.data = undefined;
  return entity;
}

/**
 * Creates and full updates of distinct entities, all in ONE statement (the tombstone of a
 * re-created entity consumed as applyAction does): the common commands of a batch without a round
 * trip each while the partition waits. Only the first command of each entity in the batch is
 * taken (whatever its kind: a create or update behind a patch or delete waits its turn), and only
 * when it is a create or update whose data passes the schema check; the answer has an ApplyResult for each
 * command the statement applied and undefined for every other (not taken, already existing, a
 * version mismatch, a missing entity), which the caller then applies with applyAction in message
 * order, inside the same transaction, so one entity's commands keep their order and each refusal
 * gets its exact reason.
 */
export async function applyCommonAtOnce(tx: Sql, commands: readonly { readonly action: CommandAction; readonly fallbackId: string }[], schemas: SchemaCheck): Promise<(ApplyResult | undefined)[]> {
  const taken = new Map<string, number>();
  const seen = new Set<string>();
  commands.forEach(({ action, fallbackId }, i) => {
    const key = rowKey(action.value.tenant, action.value.type, action.value.id || fallbackId);
    // Only an entity's FIRST command may go ahead of the others: a create or update behind a patch
    // or delete of the same entity must wait for it (per-entity order).
    if (seen.has(key)) return;
    seen.add(key);
    if (action.case !== "create" && action.case !== "update") return;
    if (schemas.check(action.value.type, action.value.data ?? {})) return;
    taken.set(key, i);
  });
  const results: (ApplyResult | undefined)[] = new Array(commands.length).fill(undefined);
  if (taken.size === 0) return results;
  const input = [...taken.values()].map((i) => {
    const { action, fallbackId } = commands[i]!;
    const value = action.value as { tenant: string; type: string; id: string; data?: JsonObject; expectedVersion?: bigint };
    return [action.case!, value.tenant, value.type, value.id || fallbackId, JSON.stringify(value.data ?? {}), (value.expectedVersion ?? 0n).toString()] as const;
  });
  const { rows } = await tx.query<EntityRow & { change: "create" | "update" }>(APPLY_COMMON_SQL, Array.from({ length: 6 }, (_, column) => input.map((row) => row[column])));
  for (const row of rows) {
    const i = taken.get(rowKey(row.tenant, row.type, row.id));
    if (i === undefined) continue;
    results[i] = { ok: true, kind: row.change === "create" ? ChangeKind.CREATED : ChangeKind.UPDATED, entity: entityFromRow(row) };
  }
  return results;
}

const rowKey = (tenant: string, type: string, id: string) => `${tenant}\u0000${type}\u0000${id}`;

const APPLY_COMMON_SQL = `WITH input AS MATERIALIZED (
  SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[]) AS t(change, tenant, type, id, data, expected)
), deleted AS (
  DELETE FROM umw_entity_tombstones t USING input i
   WHERE i.change = 'create' AND t.tenant = i.tenant AND t.type = i.type AND t.id = i.id
  RETURNING t.tenant, t.type, t.id, t.version
), created AS (
  INSERT INTO umw_entities (tenant, type, id, version, data)
  SELECT i.tenant, i.type, i.id, COALESCE(d.version, 0) + 1, i.data::jsonb FROM input i
    LEFT JOIN deleted d ON d.tenant = i.tenant AND d.type = i.type AND d.id = i.id
   WHERE i.change = 'create'
  ON CONFLICT (tenant, type, id) DO NOTHING
  RETURNING ${ENTITY_COLUMNS}
), updated AS (
  UPDATE umw_entities e SET data = i.data::jsonb, version = e.version + 1, update_time = now()
    FROM input i
   WHERE i.change = 'update' AND e.tenant = i.tenant AND e.type = i.type AND e.id = i.id AND (i.expected = 0 OR e.version = i.expected)
  RETURNING e.tenant, e.type, e.id, e.version, e.data, e.create_time, e.update_time
)
SELECT 'create' AS change, ${ENTITY_COLUMNS} FROM created
UNION ALL SELECT 'update' AS change, ${ENTITY_COLUMNS} FROM updated`;
