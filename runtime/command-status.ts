import { create, createRegistry, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { CommandState, CommandStatusSchema, type CommandStatus } from "../gen/umw/v1/command_pb.js";
import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { StatusSchema, type Status } from "../gen/google/rpc/status_pb.js";
import { Code, RpcError } from "./errors.js";

/** A row of `umw_commands`, as every reader selects it (COMMAND_COLUMNS). */
export interface CommandRow {
  readonly id: string;
  readonly tenant: string;
  readonly principal: string;
  readonly type: string;
  readonly entity_id: string;
  readonly state: string;
  readonly version: string | number | null;
  readonly error: unknown;
  readonly create_time: Date;
  readonly update_time: Date;
}

export const COMMAND_COLUMNS = "id, tenant, principal, type, entity_id, state, version, error, create_time, update_time";

const STATES: Readonly<Record<string, CommandState>> = {
  accepted: CommandState.ACCEPTED,
  applied: CommandState.APPLIED,
  rejected: CommandState.REJECTED,
  failed: CommandState.FAILED,
};

export const TERMINAL_STATES: ReadonlySet<CommandState> = new Set([CommandState.APPLIED, CommandState.REJECTED, CommandState.FAILED]);

export function commandStatusFromRow(row: CommandRow): CommandStatus {
  return create(CommandStatusSchema, {
    commandId: row.id,
    tenant: row.tenant,
    type: row.type,
    entityId: row.entity_id,
    state: STATES[row.state] ?? CommandState.UNSPECIFIED,
    version: row.version === null ? 0n : BigInt(row.version),
    error: row.error === null || row.error === undefined ? undefined : errorStatus(row.error),
    createTime: timestampFromDate(row.create_time),
    updateTime: timestampFromDate(row.update_time),
  });
}

const errorRegistry = createRegistry(ErrorInfoSchema);

/**
 * The `error` column as google.rpc.Status. The processor writes google.rpc.Status JSON with
 * ErrorInfo details; `{code, reason, message, metadata}` (code as number or name) is read too.
 */
export function errorStatus(value: unknown): Status {
  const json = value as { code?: unknown; reason?: unknown; message?: unknown; metadata?: unknown; details?: unknown };
  if (json && typeof json === "object") {
    if (Array.isArray(json.details)) {
      try {
        return fromJson(StatusSchema, json as JsonValue, { registry: errorRegistry, ignoreUnknownFields: true });
      } catch {
        // fall through to the simple shape
      }
    }
    const code = typeof json.code === "number" ? json.code : typeof json.code === "string" ? (Code as unknown as Record<string, number>)[json.code] ?? Code.UNKNOWN : Code.UNKNOWN;
    const metadata: Record<string, string> = {};
    if (json.metadata && typeof json.metadata === "object") {
      for (const [key, item] of Object.entries(json.metadata)) metadata[key] = typeof item === "string" ? item : JSON.stringify(item);
    }
    return RpcError.fromWire(code, typeof json.reason === "string" ? json.reason : Code[code] ?? "UNKNOWN", typeof json.message === "string" ? json.message : "", metadata).toStatus();
  }
  return new RpcError(Code.UNKNOWN, "UNKNOWN", typeof value === "string" ? value : JSON.stringify(value)).toStatus();
}
