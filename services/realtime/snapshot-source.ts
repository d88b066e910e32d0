import type { Entity } from "../../gen/umw/v1/entity_pb.js";
import { entityFromRow, type EntityRow } from "../../runtime/entity.js";
import type { Sql } from "../../runtime/sql.js";

export interface SnapshotQuery {
  readonly entities: readonly { readonly tenant: string; readonly type: string; readonly id: string }[];
  readonly types: readonly { readonly tenant: string; readonly type: string }[];
  /** Most entities returned per type (ordered by id). */
  readonly limitPerType: number;
}

export interface Snapshot {
  /** Current state of each entity that exists, each with the version it is at. */
  readonly entities: Entity[];
  /** A type had more entities than the limit. */
  readonly truncated: boolean;
}

/**
 * The current state of the subscribed entities, read from the primary (never a lagging replica:
 * the stream continues from the versions it reports).
 */
export interface EntitySnapshotSource {
  read(query: SnapshotQuery): Promise<Snapshot>;
}

const COLUMNS = "tenant, type, id, version, data, create_time, update_time";

/** EntitySnapshotSource on the umw_entities table of the Postgres primary. */
export function postgresSnapshotSource(sql: Sql): EntitySnapshotSource {
  return {
    async read(query) {
      const byKey = new Map<string, Entity>();
      let truncated = false;
      const reads: Promise<void>[] = [];
      if (query.entities.length > 0) {
        reads.push(
          sql
            .query<EntityRow>(
              `SELECT ${COLUMNS} FROM umw_entities
                WHERE (tenant, type, id) IN (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))`,
              [query.entities.map((e) => e.tenant), query.entities.map((e) => e.type), query.entities.map((e) => e.id)],
            )
            .then(({ rows }) => {
              for (const row of rows) byKey.set(`${row.tenant}/${row.type}/${row.id}`, entityFromRow(row));
            }),
        );
      }
      for (const { tenant, type } of query.types) {
        reads.push(
          sql
            .query<EntityRow>(`SELECT ${COLUMNS} FROM umw_entities WHERE tenant = $1 AND type = $2 ORDER BY id LIMIT $3`, [tenant, type, query.limitPerType + 1])
            .then(({ rows }) => {
              if (rows.length > query.limitPerType) {
                truncated = true;
                rows.length = query.limitPerType;
              }
              for (const row of rows) byKey.set(`${row.tenant}/${row.type}/${row.id}`, entityFromRow(row));
            }),
        );
      }
      await Promise.all(reads);
      return { entities: [...byKey.values()], truncated };
    },
  };
}
