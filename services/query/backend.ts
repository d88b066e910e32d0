import type { Entity } from "../../gen/umw/v1/entity_pb.js";
import { Code, RpcError, unavailable } from "../../runtime/errors.js";
import { within } from "../../runtime/within.js";

/**
 * Where a resource type's entities live (port): the Postgres read replica, an upstream HTTP
 * service, or anything else that can answer by key. Failures are RpcErrors: UNAVAILABLE
 * (BACKEND_UNAVAILABLE, BACKEND_TIMEOUT, UPSTREAM_ERROR) when the store cannot answer now.
 */
export interface EntityBackend {
  /** For metrics and logs: "postgres", "http", ... */
  readonly kind: string;
  /** The entity, or undefined when it does not exist. */
  get(tenant: string, type: string, id: string, signal: AbortSignal): Promise<Entity | undefined>;
  /** The entities that exist among `ids`, by id. */
  batchGet(tenant: string, type: string, ids: readonly string[], signal: AbortSignal): Promise<Map<string, Entity>>;
  /** Up to `limit` entities with key > `after`, ordered by key; absent when the backend cannot list. */
  list?(tenant: string, type: string, after: string | undefined, limit: number, signal: AbortSignal): Promise<Entity[]>;
}

/** Failures the cache may answer with a stale copy instead: the store, not the request, is at fault. */
export function isBackendFailure(error: unknown): boolean {
  if (!(error instanceof RpcError)) return true;
  return error.code === Code.UNAVAILABLE || error.code === Code.DEADLINE_EXCEEDED || error.code === Code.INTERNAL || error.code === Code.UNKNOWN;
}

export function backendTimeout(what: string, ms: number): RpcError {
  return unavailable("BACKEND_TIMEOUT", `${what} did not answer within ${ms} ms`, { timeoutMs: String(ms) });
}

/** Rejects with BACKEND_TIMEOUT after `ms` unless `promise` settles first; the load itself goes on. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return within(promise, ms, () => backendTimeout(what, ms));
}
