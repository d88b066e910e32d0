import type { QueryService } from "../../gen/umw/v1/query_pb.js";
import { checkName, checkType } from "../../runtime/entity.js";
import { notFound } from "../../runtime/errors.js";
import { checkCallerTenant } from "../../runtime/tenant-guard.js";
import type { ServiceHandlers } from "../../runtime/service-definition.js";
import { batchCacheStatus, CACHE_STATUS_HEADER, formatCacheStatus } from "./cache-status.js";
import { decodePageToken, encodePageToken, pageSizeOf } from "./page-token.js";
import type { EntityReader } from "./reader.js";

/**
 * QueryService over an EntityReader. Every answer carries `umw-cache-status` (RFC 9211 syntax). A
 * user principal from a trusted edge (`trustedPeers`) reads only its own tenant.
 */
export function queryHandlers(reader: EntityReader, trustedPeers: ReadonlySet<string> = new Set(["edge"])): ServiceHandlers<typeof QueryService> {
  return {
    async getEntity(request, ctx) {
      checkCallerTenant(ctx, trustedPeers, request.tenant);
      const { tenant, type, id } = request;
      const result = await reader.get({ tenant, type, id, minVersion: request.minVersion }, ctx.signal);
      ctx.setHeader(CACHE_STATUS_HEADER, formatCacheStatus(result.status));
      if (!result.entity) throw notFound("ENTITY_NOT_FOUND", `${type} ${JSON.stringify(id)} does not exist in tenant ${JSON.stringify(tenant)}`, { tenant, type, id });
      return { entity: result.entity };
    },

    async batchGetEntities(request, ctx) {
      checkCallerTenant(ctx, trustedPeers, request.tenant);
      const results = await reader.getMany(request.tenant, request.type, request.ids, ctx.signal);
      ctx.setHeader(CACHE_STATUS_HEADER, formatCacheStatus(batchCacheStatus(results.map(({ result }) => result.status))));
      const entities = [];
      const missingIds = [];
      for (const { id, result } of results) {
        if (result.entity) entities.push(result.entity);
        else missingIds.push(id);
      }
      return { entities, missingIds };
    },

    async listEntities(request, ctx) {
      checkCallerTenant(ctx, trustedPeers, request.tenant);
      const { tenant, type } = request;
      checkName("tenant", tenant);
      checkType(type);
      const pageSize = pageSizeOf(request.pageSize);
      const after = request.pageToken ? decodePageToken(tenant, type, request.pageToken) : undefined;
      // One more than a page: whether another page follows, without a count query.
      const entities = await reader.list(tenant, type, after, pageSize + 1, ctx.signal);
      const page = entities.slice(0, pageSize);
      ctx.setHeader(CACHE_STATUS_HEADER, formatCacheStatus({ kind: "bypass" }));
      return { entities: page, nextPageToken: entities.length > pageSize ? encodePageToken(tenant, type, page[page.length - 1]!.id) : "" };
    },
  };
}
