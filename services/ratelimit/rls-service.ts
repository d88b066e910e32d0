import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import { CommandService } from "../../gen/umw/v1/command_pb.js";
import { QueryService } from "../../gen/umw/v1/query_pb.js";
import {
  RateLimitResponse_Code,
  RateLimitResponse_RateLimit_Unit,
  RateLimitResponseSchema,
  RateLimitResponse_DescriptorStatusSchema,
  type RateLimitRequest,
  type RateLimitResponse,
  type RateLimitService,
} from "../../gen/envoy/service/ratelimit/v3/rls_pb.js";
import { Code, RpcError } from "../../runtime/errors.js";
import type { ServiceHandlers } from "../../runtime/service-definition.js";
import { typeRegistry } from "../edge/edge-context.js";
import { statusJson } from "../edge/edge-failure.js";
import { isFreshRead, pathTenant } from "../edge/rate-limit.js";
import { readHttpBindings } from "../edge/http-rules.js";
import { RouteTable } from "../edge/route-table.js";
import { DESCRIPTOR_KEYS } from "./envoy-descriptor.js";
import { rateLimitHeaders } from "./headers.js";
import type { PolicyState, RateLimiter } from "./limiter.js";
import { refusalOf } from "./refusal.js";
import type { RateLimitSubject } from "./rules.js";

const GRPC_PATH = /^\/(umw\.v1\.[A-Za-z]+\/[A-Za-z]+)$/;

/**
 * envoy.service.ratelimit.v3.RateLimitService for Envoy's rate limit filter: each descriptor
 * (method, path, client address) is keyed like the Node edge keys the request (the same REST route
 * table, tenant and min_version) and charged to the same Redis buckets. A refusal carries the same
 * google.rpc.Status JSON, Retry-After and RateLimit headers as the Node edge's. Without a limiter
 * (rate limits off) every request is OK.
 */
export function rateLimitServiceHandlers(limiter: RateLimiter | undefined): ServiceHandlers<typeof RateLimitService> {
  const routes = new RouteTable(readHttpBindings([QueryService, CommandService], new Set()));
  const registry = typeRegistry([]);

  const subjectOf = (entries: ReadonlyMap<string, string>): RateLimitSubject | undefined => {
    const method = entries.get(DESCRIPTOR_KEYS.method) ?? "GET";
    const target = entries.get(DESCRIPTOR_KEYS.path);
    const address = entries.get(DESCRIPTOR_KEYS.remoteAddress);
    if (target === undefined || address === undefined) return undefined;
    const q = target.indexOf("?");
    const path = q < 0 ? target : target.slice(0, q);
    const query = q < 0 ? undefined : target.slice(q + 1);
    const subject = `ip:${address}`;
    const grpc = GRPC_PATH.exec(path);
    if (grpc) return { tenant: undefined, subject, route: grpc[1]! };
    let match;
    try {
      match = routes.match(method, path);
    } catch {
      return undefined;
    }
    if (!match) return undefined;
    const { method: rpc } = match.binding;
    return { tenant: pathTenant(match), subject, route: `${rpc.parent.typeName}/${rpc.name}`, freshRead: isFreshRead(method, query) };
  };

  return {
    async shouldRateLimit(request: RateLimitRequest): Promise<RateLimitResponse> {
      const response: MessageInitShape<typeof RateLimitResponseSchema> & { statuses: MessageInitShape<typeof RateLimitResponse_DescriptorStatusSchema>[] } = {
        overallCode: RateLimitResponse_Code.OK,
        statuses: [],
      };
      let headers: Record<string, string> = {};
      for (const descriptor of request.descriptors) {
        const entries = new Map(descriptor.entries.map((entry) => [entry.key, entry.value]));
        const subject = subjectOf(entries);
        if (!subject || !limiter) {
          response.statuses.push({ code: RateLimitResponse_Code.OK });
          continue;
        }
        const decision = await limiter.check(subject, Math.max(1, request.hitsAddend));
        if (decision.outcome === "unavailable") {
          // Envoy's failure_mode_deny (set from the same failure mode) decides what an error means.
          if (!decision.allowed) throw new RpcError(Code.UNAVAILABLE, "RATE_LIMITER_UNAVAILABLE", "the rate limiter cannot reach redis");
          response.statuses.push({ code: RateLimitResponse_Code.OK });
          continue;
        }
        const refusal = refusalOf(decision);
        response.statuses.push({ code: refusal ? RateLimitResponse_Code.OVER_LIMIT : RateLimitResponse_Code.OK, ...descriptorStatus(decision.policies) });
        if (response.overallCode === RateLimitResponse_Code.OVER_LIMIT) continue;
        headers = rateLimitHeaders(decision);
        if (refusal) {
          response.overallCode = RateLimitResponse_Code.OVER_LIMIT;
          if ((entries.get(DESCRIPTOR_KEYS.contentType) ?? "").startsWith("application/grpc")) {
            // Envoy answers a gRPC call itself (RESOURCE_EXHAUSTED, trailers only): the Status with its details travels as gRPC does.
            headers = { ...headers, "grpc-status-details-bin": Buffer.from(toBinary(StatusSchema, refusal.status)).toString("base64").replace(/=+$/, "") };
          } else {
            response.rawBody = new TextEncoder().encode(statusJson(refusal.status, registry));
            headers = { ...headers, "content-type": "application/json", "cache-control": "no-store" };
          }
        }
      }
      response.responseHeadersToAdd = Object.entries(headers).map(([key, value]) => ({ key, value }));
      return create(RateLimitResponseSchema, response);
    },
  };
}

/** The tightest policy as Envoy's DescriptorStatus (its limit in whole requests per second or minute). */
function descriptorStatus(policies: readonly PolicyState[]) {
  const tightest = policies.reduce((a, b) => (b.remaining < a.remaining ? b : a));
  const perSecond = tightest.quota / tightest.windowSeconds;
  const perMinute = perSecond < 1;
  return {
    currentLimit: { name: tightest.policy, requestsPerUnit: Math.round(perMinute ? perSecond * 60 : perSecond), unit: perMinute ? RateLimitResponse_RateLimit_Unit.MINUTE : RateLimitResponse_RateLimit_Unit.SECOND },
    limitRemaining: tightest.remaining,
    durationUntilReset: create(DurationSchema, { seconds: BigInt(Math.ceil(tightest.resetMs / 1000)) }),
  };
}

