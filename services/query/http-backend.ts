import { create, type JsonObject } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { EntitySchema, type Entity } from "../../gen/umw/v1/entity_pb.js";
import { Code, RpcError, unavailable } from "../../runtime/errors.js";
import { backendTimeout, type EntityBackend } from "./backend.js";

export interface HttpBackendOptions {
  /** e.g. http://127.0.0.1:9000/things/{tenant}/{id}; {tenant}, {type}, {id} are percent-encoded. */
  readonly urlTemplate: string;
  readonly timeoutMs: number;
  /** Parallel requests of one batchGet. */
  readonly batchConcurrency?: number;
}

/**
 * Reads entities from an upstream HTTP service: `GET <urlTemplate>` answers
 * `{"version": 3, "data": {...}, "createTime"?: RFC 3339, "updateTime"?: RFC 3339}` or 404.
 * Anything else (other status, bad JSON, no answer within timeoutMs) is UNAVAILABLE.
 * It cannot list.
 */
export class HttpBackend implements EntityBackend {
  readonly kind = "http";

  constructor(private readonly options: HttpBackendOptions) {}

  url(tenant: string, type: string, id: string): string {
    const values: Record<string, string> = { tenant, type, id };
    return this.options.urlTemplate.replace(/\{(tenant|type|id)\}/g, (_, name: string) => encodeURIComponent(values[name]!));
  }

  async get(tenant: string, type: string, id: string, signal: AbortSignal): Promise<Entity | undefined> {
    const url = this.url(tenant, type, id);
    const timeout = AbortSignal.timeout(this.options.timeoutMs);
    const combined = AbortSignal.any([timeout, signal]);
    const what = `upstream ${new URL(url).origin}`;
    try {
      const response = await fetch(url, { signal: combined, headers: { accept: "application/json" } });
      if (response.status === 404) {
        await response.body?.cancel();
        return undefined;
      }
      if (!response.ok) {
        await response.body?.cancel();
        throw unavailable("UPSTREAM_ERROR", `${what} answered HTTP ${response.status}`, { httpStatus: String(response.status) });
      }
      let body: unknown;
      try {
        body = await response.json();
      } catch (error) {
        if (combined.aborted) throw error;
        throw unavailable("UPSTREAM_BAD_RESPONSE", `${what} answered a body that is not JSON`);
      }
      return entityFromBody(tenant, type, id, body, what);
    } catch (error) {
      if (error instanceof RpcError) throw error;
      if (timeout.aborted) throw backendTimeout(what, this.options.timeoutMs);
      if (signal.aborted) throw new RpcError(Code.CANCELLED, "CANCELLED", "the load was cancelled");
      const failure = unavailable("BACKEND_UNAVAILABLE", `${what} is not reachable`);
      failure.cause = error;
      throw failure;
    }
  }

  async batchGet(tenant: string, type: string, ids: readonly string[], signal: AbortSignal): Promise<Map<string, Entity>> {
    const found = new Map<string, Entity>();
    let next = 0;
    const worker = async () => {
      while (next < ids.length) {
        const id = ids[next++]!;
        const entity = await this.get(tenant, type, id, signal);
        if (entity) found.set(id, entity);
      }
    };
    await Promise.all(Array.from({ length: Math.min(ids.length, this.options.batchConcurrency ?? 8) }, worker));
    return found;
  }
}

function entityFromBody(tenant: string, type: string, id: string, body: unknown, what: string): Entity {
  const bad = (detail: string) => unavailable("UPSTREAM_BAD_RESPONSE", `${what}: ${detail}`);
  if (body === null || typeof body !== "object" || Array.isArray(body)) throw bad("the body is not a JSON object");
  const { version, data, createTime, updateTime } = body as Record<string, unknown>;
  let parsed: bigint;
  try {
    if (!(typeof version === "number" && Number.isSafeInteger(version)) && !(typeof version === "string" && /^\d{1,19}$/.test(version))) throw new Error();
    parsed = BigInt(version);
  } catch {
    throw bad("version must be a non-negative integer");
  }
  if (parsed < 0n || parsed > 9_223_372_036_854_775_807n) throw bad("version must be a non-negative int64");
  if (data === null || typeof data !== "object" || Array.isArray(data)) throw bad("data must be a JSON object");
  return create(EntitySchema, {
    tenant,
    type,
    id,
    version: parsed,
    data: data as JsonObject,
    createTime: timestampOf(createTime),
    updateTime: timestampOf(updateTime),
  });
}

function timestampOf(value: unknown) {
  if (typeof value !== "string") return undefined;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : timestampFromDate(date);
}
