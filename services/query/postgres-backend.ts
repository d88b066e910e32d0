import { createHash } from "node:crypto";
import type { JsonObject } from "@bufbuild/protobuf";
import type { Entity } from "../../gen/umw/v1/entity_pb.js";
import { entityFromRow } from "../../runtime/entity.js";
import { Code, RpcError, unavailable } from "../../runtime/errors.js";
import { classifyPgError } from "../../runtime/pg-errors.js";
import type { Database, QueryResult } from "../../runtime/sql.js";
import type { EntityBackend } from "./backend.js";

/** The table of one resource type (the postgres backend of runtime/resources.ts). */
export interface PostgresTable {
  readonly table: string;
  readonly keyColumn: string;
  readonly tenantColumn: string;
  readonly versionColumn: string;
  readonly dataColumn: string;
  /** Set when the table holds several types (the shared umw_entities table). */
  readonly typeColumn?: string | undefined;
}

interface Row {
  id: string;
  version: string;
  data: unknown;
  create_time?: Date | null;
  update_time?: Date | null;
}

/** Optional columns read when the table has them (umw_entities does). */
const TIME_COLUMNS = ["create_time", "update_time"] as const;

/** What the backend needs of the read replica (a Database, runtime/sql.ts). */
export type ReplicaDatabase = Pick<Database, "query" | "prepared">;

/**
 * Reads one resource type from Postgres (the read replica): get, batchGet and keyset-paginated
 * list, as named prepared statements. Identifiers come from config and are quoted; values are
 * always parameters. The database belongs to the caller (types share it).
 */
export class PostgresBackend implements EntityBackend {
  readonly kind = "postgres";
  private statements: Promise<Statements> | undefined;

  constructor(
    private readonly pool: ReplicaDatabase,
    private readonly table: PostgresTable,
  ) {}

  async get(tenant: string, type: string, id: string): Promise<Entity | undefined> {
    const { get } = await this.prepared();
    const { rows } = await this.run<Row>(get, [tenant, ...this.typeParam(type), id], "get");
    const row = rows[0];
    return row && this.entity(tenant, type, row);
  }

  async batchGet(tenant: string, type: string, ids: readonly string[]): Promise<Map<string, Entity>> {
    const found = new Map<string, Entity>();
    if (ids.length === 0) return found;
    const { batchGet } = await this.prepared();
    const { rows } = await this.run<Row>(batchGet, [tenant, ...this.typeParam(type), ids], "batchGet");
    for (const row of rows) found.set(row.id, this.entity(tenant, type, row));
    return found;
  }

  async list(tenant: string, type: string, after: string | undefined, limit: number): Promise<Entity[]> {
    const { listFirst, listAfter } = await this.prepared();
    const params = [tenant, ...this.typeParam(type)];
    const { rows } =
      after === undefined
        ? await this.run<Row>(listFirst, [...params, limit], "list")
        : await this.run<Row>(listAfter, [...params, after, limit], "list");
    return rows.map((row) => this.entity(tenant, type, row));
  }

  private typeParam(type: string): string[] {
    return this.table.typeColumn ? [type] : [];
  }

  private entity(tenant: string, type: string, row: Row): Entity {
    return entityFromRow({ tenant, type, id: row.id, version: row.version, data: asObject(row.data), create_time: row.create_time, update_time: row.update_time });
  }

  private async run<R>(statement: { name: string; text: string }, values: unknown[], op: string): Promise<QueryResult<R>> {
    try {
      return await this.pool.prepared<R>(statement.name, statement.text, values);
    } catch (error) {
      throw pgFailure(error, `postgres ${op} on ${this.table.table}`);
    }
  }

  private prepared(): Promise<Statements> {
    this.statements ??= this.build().catch((error: unknown) => {
      this.statements = undefined;
      throw pgFailure(error, `postgres: reading the columns of ${this.table.table}`);
    });
    return this.statements;
  }

  private async build(): Promise<Statements> {
    const { table, keyColumn, tenantColumn, versionColumn, dataColumn, typeColumn } = this.table;
    const { rows } = await this.pool.query<{ attname: string }>(
      "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped AND attname = ANY($2)",
      [quoteIdent(table), [...TIME_COLUMNS]],
    );
    const present = new Set(rows.map((row) => row.attname));
    const select = [
      `${quoteIdent(keyColumn)}::text AS id`,
      `${quoteIdent(versionColumn)}::text AS version`,
      `${quoteIdent(dataColumn)} AS data`,
      ...TIME_COLUMNS.filter((column) => present.has(column) && column !== keyColumn).map((column) => `${quoteIdent(column)} AS ${column}`),
    ].join(", ");
    const from = `FROM ${quoteIdent(table)} WHERE ${quoteIdent(tenantColumn)} = $1` + (typeColumn ? ` AND ${quoteIdent(typeColumn)} = $2` : "");
    const next = typeColumn ? 3 : 2;
    const key = quoteIdent(keyColumn);
    return {
      get: named(`SELECT ${select} ${from} AND ${key} = $${next}`),
      batchGet: named(`SELECT ${select} ${from} AND ${key} = ANY($${next}::text[])`),
      listFirst: named(`SELECT ${select} ${from} ORDER BY ${key} LIMIT $${next}`),
      listAfter: named(`SELECT ${select} ${from} AND ${key} > $${next} ORDER BY ${key} LIMIT $${next + 1}`),
    };
  }
}

interface Statements {
  readonly get: { name: string; text: string };
  readonly batchGet: { name: string; text: string };
  readonly listFirst: { name: string; text: string };
  readonly listAfter: { name: string; text: string };
}

/** A named (server-side prepared) statement; the name follows the text, so equal texts share it. */
function named(text: string): { name: string; text: string } {
  return { name: `umw_${createHash("sha1").update(text).digest("hex").slice(0, 20)}`, text };
}

/** Double-quotes an SQL identifier (config already restricts them to [a-z_][a-z0-9_]*). */
export function quoteIdent(identifier: string): string {
  return `"${identifier.replace(/"/g, '""')}"`;
}

function asObject(data: unknown): JsonObject {
  if (data !== null && typeof data === "object" && !Array.isArray(data)) return data as JsonObject;
  return { value: (data ?? null) as JsonObject[string] };
}

/** A pg failure as the caller should see it: store unreachable, slow, or a bug (details only in logs). */
export function pgFailure(error: unknown, what: string): RpcError {
  if (error instanceof RpcError) return error;
  const { code, message = "" } = (error ?? {}) as { code?: string; message?: string };
  const kind = classifyPgError(error);
  let failure: RpcError;
  if (kind === "timeout" || (kind === "unknown" && /timeout/i.test(message))) {
    failure = unavailable("BACKEND_TIMEOUT", `${what} timed out`);
  } else if (kind === "connection" || kind === "failover" || kind === "conflict" || (kind === "unknown" && /not queryable/i.test(message))) {
    // A replica's recovery conflict is 40001 too: the read can be retried.
    failure = unavailable("BACKEND_UNAVAILABLE", `${what}: the database is not reachable`, code ? { cause: code } : {});
  } else {
    failure = new RpcError(Code.INTERNAL, "BACKEND_ERROR", `${what} failed`, code ? { sqlstate: code } : {});
  }
  failure.cause = error;
  return failure;
}
