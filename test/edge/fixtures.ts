// Test fixtures for the edge: dev certificates in a temp dir, fake QueryService and CommandService
// on real mTLS grpc-js servers (MeshServer) that record what they got, and an edge in front of them.
import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import type { JsonObject } from "@bufbuild/protobuf";
import { CommandService, CommandState } from "../../gen/umw/v1/command_pb.js";
import { QueryService } from "../../gen/umw/v1/query_pb.js";
import { Code, RpcError } from "../../runtime/errors.js";
import { MeshServer } from "../../runtime/server.js";
import { clientCredentials, serverCredentials } from "../../runtime/tls.js";
import { startEdge, type EdgeOptions, type RunningEdge } from "../../services/edge/index.js";
import { testCerts } from "../support/certs.js";
import { freePort } from "../support/ports.js";
import { testUpstreamClient } from "../support/edge-upstream-client.js";

export const log = pino({ level: "silent" });

/** What a fake upstream saw: the method, the request as JSON-ish object, the incoming metadata. */
export interface Recorded {
  readonly method: string;
  readonly request: Record<string, unknown>;
  readonly headers: Readonly<Record<string, string>>;
}

export interface Fixture {
  readonly edge: RunningEdge;
  readonly url: string;
  readonly calls: Recorded[];
  /** The last call a fake upstream recorded for this method. */
  last(method: string): Recorded;
  /** An address where nothing listens (for "upstream down"). */
  readonly deadAddress: string;
  startEdge(options?: Partial<EdgeOptions>): Promise<RunningEdge>;
  close(): Promise<void>;
}

/** Failures the fake services raise for some ids, by id. */
const FAILURES: Record<string, () => RpcError> = {
  missing: () => new RpcError(Code.NOT_FOUND, "ENTITY_NOT_FOUND", "no such entity", { type: "book", id: "missing" }, { "umw-cache-status": "umw; hit; detail=negative" }),
  forbidden: () => RpcError.fromWire(Code.PERMISSION_DENIED, "FORBIDDEN", "not yours"),
  unauth: () => new RpcError(Code.UNAUTHENTICATED, "TOKEN_EXPIRED", "log in again"),
  limited: () => RpcError.fromWire(Code.RESOURCE_EXHAUSTED, "RATE_LIMITED", "slow down", {}, { "retry-after": "3" }),
  conflict: () => RpcError.fromWire(Code.ABORTED, "VERSION_CONFLICT", "version moved on", { expected: "3", actual: "4" }),
  precondition: () => RpcError.fromWire(Code.FAILED_PRECONDITION, "VERSION_MISMATCH", "version does not match"),
  exists: () => RpcError.fromWire(Code.ALREADY_EXISTS, "ENTITY_EXISTS", "already there"),
  invalid: () => new RpcError(Code.INVALID_ARGUMENT, "INVALID_ID", "bad id", { field: "id" }),
  busy: () => RpcError.fromWire(Code.UNAVAILABLE, "BACKEND_DOWN", "backend down"),
  boom: () => new Error("a bug") as unknown as RpcError,
};

export async function startFixture(edgeOptions: Partial<EdgeOptions> = {}): Promise<Fixture> {
  const certs = testCerts(["query", "command", "edge"]);
  const calls: Recorded[] = [];
  const record = (method: string, request: object, headers: Readonly<Record<string, string>>) =>
    calls.push({ method, request: { ...(request as Record<string, unknown>) }, headers });

  const query = new MeshServer({ name: "query", host: "127.0.0.1", port: 0, credentials: serverCredentials(certs.identity("query")), log, drainTimeoutMs: 500 });
  query.addService(QueryService, {
    async getEntity(request, ctx) {
      record("GetEntity", request, ctx.headers);
      const failure = FAILURES[request.id];
      if (failure) throw failure();
      if (request.id === "slow") await sleep(2_000, undefined, { signal: ctx.signal }).catch(() => undefined);
      ctx.setHeader("umw-cache-status", request.id === "cold" ? "umw; fwd=miss; stored" : "umw; hit; ttl=376");
      return {
        entity: { tenant: request.tenant, type: request.type, id: request.id, version: request.minVersion > 0n ? request.minVersion : 7n, data: { name: request.id, n: 1 } },
      };
    },
    async batchGetEntities(request, ctx) {
      record("BatchGetEntities", request, ctx.headers);
      return {
        entities: request.ids.filter((id) => id !== "missing").map((id) => ({ tenant: request.tenant, type: request.type, id, version: 1n })),
        missingIds: request.ids.filter((id) => id === "missing"),
      };
    },
    async listEntities(request, ctx) {
      record("ListEntities", request, ctx.headers);
      return { entities: [], nextPageToken: `after-${request.pageSize}-${request.pageToken}` };
    },
  });
  const queryPort = await query.start();

  const receipt = (commandId: string, entityId: string) => ({
    receipt: { commandId, state: CommandState.ACCEPTED, statusUrl: `/v1/tenants/t1/commands/${commandId}`, entityId },
  });
  const command = new MeshServer({ name: "command", host: "127.0.0.1", port: 0, credentials: serverCredentials(certs.identity("command")), log, drainTimeoutMs: 500 });
  command.addService(CommandService, {
    async createEntity(request, ctx) {
      record("CreateEntity", request, ctx.headers);
      ctx.setHeader("x-http-status", "202");
      ctx.setHeader("location", "/v1/tenants/t1/commands/c-create");
      return receipt("c-create", request.id || "generated");
    },
    async updateEntity(request, ctx) {
      record("UpdateEntity", request, ctx.headers);
      const failure = FAILURES[request.id];
      if (failure) throw failure();
      ctx.setHeader("x-http-status", "202");
      return receipt("c-update", request.id);
    },
    async patchEntity(request, ctx) {
      record("PatchEntity", request, ctx.headers);
      ctx.setHeader("x-http-status", "202");
      return receipt("c-patch", request.id);
    },
    async deleteEntity(request, ctx) {
      record("DeleteEntity", request, ctx.headers);
      ctx.setHeader("x-http-status", "202");
      return receipt("c-delete", request.id);
    },
    async getCommand(request, ctx) {
      record("GetCommand", request, ctx.headers);
      return { command: { commandId: request.commandId, tenant: request.tenant, state: CommandState.APPLIED, version: 3n } };
    },
    async *watchCommand(request, ctx) {
      record("WatchCommand", request, ctx.headers);
      if (request.commandId === "missing") throw new RpcError(Code.NOT_FOUND, "COMMAND_NOT_FOUND", "no such command", { commandId: "missing" });
      const states = [CommandState.ACCEPTED, CommandState.ACCEPTED, CommandState.APPLIED];
      for (let i = 0; i < states.length; i++) {
        if (request.commandId === "fails" && i === 1) throw RpcError.fromWire(Code.ABORTED, "WATCH_LOST", "lost track");
        if (i > 0) await sleep(request.commandId === "slow" ? 300 : 20);
        ctx.setHeader("umw-cache-status", "umw; fwd=uri-miss");
        yield { command: { commandId: request.commandId, tenant: request.tenant, state: states[i]!, version: BigInt(i), error: i === 2 ? RpcError.fromWire(Code.OK, "APPLIED_WITH_NOTE", "note", { note: "x" }).toStatus() : undefined } };
      }
    },
  });
  const commandPort = await command.start();

  // A port that was free a moment ago: nothing listens there.
  const deadPort = await freePort();
  const credentials = clientCredentials(certs.identity("edge"));
  const edges: RunningEdge[] = [];
  const start = async (options: Partial<EdgeOptions> = {}) => {
    const edge = await startEdge({
      // These tests are about transcoding, not authentication (test/edge/auth.test.ts is): explicitly none.
      auth: { mode: "none" },
      port: 0,
      upstreams: [
        { service: QueryService, address: `127.0.0.1:${queryPort}` },
        { service: CommandService, address: `127.0.0.1:${commandPort}` },
      ],
      credentials,
      upstreamClient: testUpstreamClient(),
      log,
      drainTimeoutMs: 500,
      ...edgeOptions,
      ...options,
    });
    edges.push(edge);
    return edge;
  };
  const edge = await start();
  return {
    edge,
    url: edge.url,
    calls,
    last(method) {
      for (let i = calls.length - 1; i >= 0; i--) if (calls[i]!.method === method) return calls[i]!;
      throw new Error(`no ${method} call recorded`);
    },
    deadAddress: `127.0.0.1:${deadPort}`,
    startEdge: start,
    async close() {
      await Promise.all(edges.map((running) => running.stop()));
      await Promise.all([query.stop(), command.stop()]);
      certs.remove();
    },
  };
}

export type { JsonObject };
