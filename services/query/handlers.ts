import { create } from "@bufbuild/protobuf";
import type { Entity } from "../../gen/umw/v1/entity_pb.js";
import { GetEntityResponseSchema, type GetEntityResponse, type QueryService } from "../../gen/umw/v1/query_pb.js";
import { encodedOnce } from "../../runtime/encoded-once.js";
import { checkName, checkType } from "../../runtime/entity.js";
import { notFound } from "../../runtime/errors.js";
import type { ServiceHandlers } from "../../runtime/service-definition.js";
import { checkTenantOfPrincipal } from "../../runtime/tenant-guard.js";
import { batchCacheStatus, CACHE_STATUS_HEADER, formatCacheStatus } from "./cache-status.js";
import { decodePageToken, encodePageToken, pageSizeOf } from "./page-token.js";
import type { EntityReader } from "./reader.js";

/**
 * QueryService over an EntityReader. Every answer carries `umw-cache-status` (RFC 9211 syntax). A
 * user principal (asserted by one of `trustedPeers`) reads only its own tenant.
 */
export function queryHandlers(reader: EntityReader, trustedPeers: ReadonlySet<string> = new Set(["edge"])): ServiceHandlers<typeof QueryService> {
  return {
    async getEntity(request, ctx) {
      const { tenant, type, id } = request;
      checkTenantOfPrincipal(ctx, tenant, trustedPeers);
      // The context, not ctx.signal: the signal (and its deadline timer) is made only if the read needs the backend.
      const result = await reader.get({ tenant, type, id, minVersion: request.minVersion }, ctx);
      ctx.setHeader(CACHE_STATUS_HEADER, formatCacheStatus(result.status));
      if (!result.entity) throw notFound("ENTITY_NOT_FOUND", `${type} ${JSON.stringify(id)} does not exist in tenant ${JSON.stringify(tenant)}`, { tenant, type, id });
      return responseOf(result.entity);
    },

    async batchGetEntities(request, ctx) {
      checkTenantOfPrincipal(ctx, request.tenant, trustedPeers);
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
      const { tenant, type } = request;
      checkTenantOfPrincipal(ctx, tenant, trustedPeers);
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

/**
 * The GetEntity answer of an entity, made and encoded once per entity object: the cache hands out
 * one shared Entity per cached entry (RedisCache's decoded entries, L1), so every hit on the same
 * version sends the same bytes without encoding them again.
 */
const responses = new WeakMap<Entity, GetEntityResponse>();

function responseOf(entity: Entity): GetEntityResponse {
  let response = responses.get(entity);
  if (!response) {
    response = encodedOnce(GetEntityResponseSchema, create(GetEntityResponseSchema, { entity }));
    responses.set(entity, response);
  }
  return response;
}
