import { create } from "@bufbuild/protobuf";
import type { JsonObject } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { EntitySchema, type Entity } from "../gen/umw/v1/entity_pb.js";
import { invalidArgument } from "./errors.js";

/** A row as the primary database and every Postgres adapter return it. */
export interface EntityRow {
  readonly tenant: string;
  readonly type: string;
  readonly id: string;
  readonly version: string | number | bigint;
  readonly data: JsonObject;
  readonly create_time?: Date | null;
  readonly update_time?: Date | null;
}

export function entityFromRow(row: EntityRow): Entity {
  return create(EntitySchema, {
    tenant: row.tenant,
    type: row.type,
    id: row.id,
    version: BigInt(row.version),
    data: row.data,
    createTime: row.create_time ? timestampFromDate(row.create_time) : undefined,
    updateTime: row.update_time ? timestampFromDate(row.update_time) : undefined,
  });
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._~-]{0,127}$/;
const TYPE = /^[a-z][a-z0-9-]{0,62}$/;

/** Tenants and ids are URL- and key-safe names: 1-128 chars of [A-Za-z0-9._~-], not starting with a symbol. */
export function checkName(field: "tenant" | "id", value: string): void {
  if (!NAME.test(value)) {
    throw invalidArgument(field === "tenant" ? "INVALID_TENANT" : "INVALID_ID", `${field} ${JSON.stringify(value)} must be 1-128 characters of A-Z a-z 0-9 . _ ~ - and start with a letter or digit`, { field });
  }
}

export function checkType(value: string): void {
  if (!TYPE.test(value)) throw invalidArgument("INVALID_TYPE", `type ${JSON.stringify(value)} must be 1-63 characters of a-z 0-9 - and start with a letter`, { field: "type" });
}

/** Kafka key and cache key body of one entity: its events keep their order on one partition. */
export function entityKey(tenant: string, type: string, id: string): string {
  return `${tenant}/${type}/${id}`;
}
