import { createContextKey, createContextValues, type ContextValues, type HandlerContext } from "@connectrpc/connect";
import { RpcError } from "../../runtime/errors.js";
import type { Principal } from "../../runtime/principal.js";
import type { RateLimiter } from "../ratelimit/limiter.js";
import { rateLimitHeaders } from "../ratelimit/headers.js";
import { refusalOf } from "../ratelimit/refusal.js";
import type { RateLimitSubject } from "../ratelimit/rules.js";
import type { HttpRequest } from "./http-exchange.js";
import type { RouteMatch } from "./route-table.js";

/** Rate limits at the Node edge: the shared limiter, and who a request is charged to. */
export interface EdgeRateLimit {
  readonly limiter: RateLimiter;
}

/** What the limiter decided for one request: a refusal to answer with, or the headers to add to the answer. */
export type Admission = { readonly refusal: RpcError; readonly headers?: undefined } | { readonly refusal?: undefined; readonly headers: Record<string, string> };

/** The subject of a request that has no principal: the client's address (the socket's; proxies in front are not believed). */
export function clientSubject(req: HttpRequest): string {
  return `ip:${req.socket?.remoteAddress ?? "unknown"}`;
}

/**
 * Charges a request to its buckets. `route` is the gRPC method (`umw.v1.QueryService/GetEntity`);
 * `pathTenant` the tenant the request names, used when there is no principal's tenant. The
 * authenticated principal, when the edge authenticates callers, keys the buckets by its tenant and
 * subject; without one, the subject is the client's address.
 */
export async function admit(
  rateLimit: EdgeRateLimit,
  req: HttpRequest,
  route: string,
  pathTenant: string | undefined,
  freshRead: boolean,
  principal: Principal | undefined,
): Promise<Admission> {
  const subject: RateLimitSubject = {
    tenant: principal?.tenant ?? pathTenant,
    subject: principal ? `${principal.kind}:${principal.subject}` : clientSubject(req),
    route,
    freshRead,
  };
  const decision = await rateLimit.limiter.check(subject);
  const refusal = refusalOf(decision);
  if (refusal) return { refusal: RpcError.fromStatus(refusal.status, refusal.headers) };
  return { headers: rateLimitHeaders(decision) };
}

/** The HTTP request behind a Connect call (its socket and headers), for the limiter. */
export const HTTP_REQUEST = createContextKey<HttpRequest | undefined>(undefined, { description: "the edge's HTTP request" });

export function connectContextValues(req: HttpRequest): ContextValues {
  return createContextValues().set(HTTP_REQUEST, req);
}

/** The tenant field of a Connect request message, when it has one. */
export function requestTenant(request: unknown): string | undefined {
  const tenant = (request as { tenant?: unknown }).tenant;
  return typeof tenant === "string" && tenant !== "" ? tenant : undefined;
}

/** A Connect read that bypasses the cache: its request asks for a min_version. */
export function requestIsFreshRead(request: unknown): boolean {
  const minVersion = (request as { minVersion?: unknown }).minVersion;
  return typeof minVersion === "bigint" && minVersion > 0n;
}

export function httpRequestOf(hctx: HandlerContext): HttpRequest | undefined {
  return hctx.values.get(HTTP_REQUEST);
}

/** The tenant a REST path names (the `tenant` path variable), for the tenant's quota. */
export function pathTenant(match: RouteMatch): string | undefined {
  const index = match.binding.pathFields.findIndex((path) => path.length === 1 && path[0]!.name === "tenant");
  return index < 0 ? undefined : match.values[index];
}

/** A read that bypasses the cache: `min_version` (or `minVersion`) above 0 in the query. */
export function isFreshRead(method: string, query: string | undefined): boolean {
  if ((method !== "GET" && method !== "HEAD") || !query) return false;
  const params = new URLSearchParams(query);
  return [...params.getAll("min_version"), ...params.getAll("minVersion")].some((value) => value.trim() !== "" && value.trim() !== "0");
}
