import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Client as GrpcClient, credentials, loadPackageDefinition, Metadata, type GrpcObject, type ServiceClientConstructor } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { protoPath as healthProtoPath } from "grpc-health-check";
import { create } from "@bufbuild/protobuf";
import { QueryService } from "../gen/umw/v1/query_pb.js";
import { EntitySchema } from "../gen/umw/v1/entity_pb.js";
import { MeshServer } from "../runtime/server.js";
import { createClient } from "../runtime/client.js";
import { clientCredentials, serverCredentials } from "../runtime/tls.js";
import { Code, RpcError } from "../runtime/errors.js";
import { rootLogger } from "../runtime/logger.js";
import type { CallContext } from "../runtime/call-context.js";
import { testCerts, type TestCerts } from "./support/certs.js";

const log = rootLogger("silent");
const PROTO_INCLUDES = ["proto", "node_modules/google-proto-files"];

/** Clients built the way a stranger to umw would build them: from the .proto files with proto-loader. */
function protoLoaderClients() {
  const definition = loadSync([healthProtoPath, "umw/v1/query.proto"], { includeDirs: PROTO_INCLUDES, enums: String });
  const reflectionDefinition = loadSync("grpc/reflection/v1/reflection.proto", {
    includeDirs: ["node_modules/@grpc/reflection/build/proto"],
  });
  const loaded = loadPackageDefinition({ ...definition, ...reflectionDefinition }) as GrpcObject;
  const pick = (path: string) => path.split(".").reduce((node: any, part) => node[part], loaded) as ServiceClientConstructor;
  return { Health: pick("grpc.health.v1.Health"), Reflection: pick("grpc.reflection.v1.ServerReflection") };
}

function healthCheck(client: any, service = ""): Promise<string> {
  return new Promise((resolve, reject) =>
    client.check({ service }, { deadline: Date.now() + 3_000 }, (error: Error | null, response: { status: string }) =>
      error ? reject(error) : resolve(response.status),
    ),
  );
}

describe("mesh runtime over mTLS", () => {
  let certs: TestCerts;
  let otherCa: TestCerts;
  let server: MeshServer;
  let downstream: MeshServer;
  let address: string;
  const seen: { peer?: string; deadline?: Date; downstreamDeadline?: Date; requestId?: string; downstreamRequestId?: string } = {};
  let releaseSlowCall: () => void = () => undefined;

  before(async () => {
    certs = testCerts(["query", "cli", "downstream"]);
    otherCa = testCerts(["cli"]);
    // A downstream service records the deadline and request id it receives from the service in front.
    downstream = new MeshServer({ name: "downstream", host: "127.0.0.1", port: 0, credentials: serverCredentials(certs.identity("downstream")), log });
    downstream.addService(QueryService, {
      async getEntity(request, ctx) {
        seen.downstreamDeadline = ctx.deadline;
        seen.downstreamRequestId = ctx.requestId;
        return { entity: { tenant: request.tenant, type: request.type, id: request.id, version: 7n } };
      },
      async batchGetEntities() {
        throw RpcError.fromWire(Code.UNIMPLEMENTED, "NOT_USED", "not used");
      },
      async listEntities() {
        throw RpcError.fromWire(Code.UNIMPLEMENTED, "NOT_USED", "not used");
      },
    });
    const downstreamPort = await downstream.start();
    const downstreamClient = createClient(QueryService, `127.0.0.1:${downstreamPort}`, clientCredentials(certs.identity("query")));

    server = new MeshServer({ name: "query", host: "127.0.0.1", port: 0, credentials: serverCredentials(certs.identity("query")), log, drainTimeoutMs: 2_000 });
    server.addService(QueryService, {
      async getEntity(request, ctx: CallContext) {
        seen.peer = ctx.peer;
        seen.deadline = ctx.deadline;
        seen.requestId = ctx.requestId;
        if (request.id === "missing") {
          ctx.setHeader("umw-cache-status", "umw; hit; detail=negative");
          throw new RpcError(Code.NOT_FOUND, "ENTITY_NOT_FOUND", "no such entity", { id: request.id });
        }
        if (request.id === "crash") throw new Error("a bug with secret details");
        if (request.id === "slow") await new Promise<void>((resolve) => (releaseSlowCall = resolve));
        if (request.id === "forward") return downstreamClient.getEntity(request);
        ctx.setHeader("umw-cache-status", "umw; hit; ttl=5");
        return { entity: create(EntitySchema, { tenant: request.tenant, type: request.type, id: request.id, version: 1n, data: { title: "hello" } }) };
      },
      async batchGetEntities() {
        throw RpcError.fromWire(Code.UNIMPLEMENTED, "NOT_USED", "not used");
      },
      async listEntities() {
        throw RpcError.fromWire(Code.UNIMPLEMENTED, "NOT_USED", "not used");
      },
    });
    address = `127.0.0.1:${await server.start()}`;
  });

  after(async () => {
    await server.stop();
    await downstream.stop();
    certs.remove();
    otherCa.remove();
  });

  test("a proto-loader client reaches Health over mTLS", async () => {
    const { Health } = protoLoaderClients();
    const cli = certs.identity("cli");
    const client = new Health(address, credentials.createSsl(cli.ca, cli.key, cli.cert));
    assert.equal(await healthCheck(client), "SERVING");
    assert.equal(await healthCheck(client, "umw.v1.QueryService"), "SERVING");
    await assert.rejects(healthCheck(client, "no.such.Service"), (error: { code: number }) => error.code === Code.NOT_FOUND);
    client.close();
  });

  test("reflection lists the services and serves their descriptors", async () => {
    const { Reflection } = protoLoaderClients();
    const cli = certs.identity("cli");
    const client = new Reflection(address, credentials.createSsl(cli.ca, cli.key, cli.cert));
    const ask = (request: object) =>
      new Promise<any>((resolve, reject) => {
        const stream = client.serverReflectionInfo!();
        stream.on("data", (response: unknown) => {
          resolve(response);
          stream.end();
        });
        stream.on("error", reject);
        stream.write(request);
      });
    const listed = await ask({ listServices: "" });
    const names = listed.listServicesResponse.service.map((service: { name: string }) => service.name);
    assert.ok(names.includes("umw.v1.QueryService"), names.join(","));
    assert.ok(names.includes("grpc.health.v1.Health"), names.join(","));
    const file = await ask({ fileContainingSymbol: "umw.v1.QueryService" });
    const fileNames = file.fileDescriptorResponse.fileDescriptorProto.map((bytes: Buffer) => bytes.toString("latin1"));
    assert.ok(fileNames.some((text: string) => text.includes("umw/v1/query.proto")));
    client.close();
  });

  test("a plaintext client is refused", async () => {
    const { Health } = protoLoaderClients();
    const client = new Health(address, credentials.createInsecure());
    await assert.rejects(healthCheck(client), (error: { code: number }) => error.code === Code.UNAVAILABLE);
    client.close();
  });

  test("TLS without a client certificate is refused", async () => {
    const { Health } = protoLoaderClients();
    const client = new Health(address, credentials.createSsl(certs.identity("cli").ca));
    await assert.rejects(healthCheck(client), (error: { code: number }) => error.code === Code.UNAVAILABLE);
    client.close();
  });

  test("a client certificate from another CA is refused", async () => {
    const { Health } = protoLoaderClients();
    const stranger = otherCa.identity("cli");
    // Trusts the server's CA, but presents a certificate the server's CA never signed.
    const client = new Health(address, credentials.createSsl(certs.identity("cli").ca, stranger.key, stranger.cert));
    await assert.rejects(healthCheck(client), (error: { code: number }) => error.code === Code.UNAVAILABLE);
    client.close();
  });

  test("typed client and handler: peer identity, response headers, request id", async () => {
    const client = createClient(QueryService, address, clientCredentials(certs.identity("cli")));
    let headers: Metadata | undefined;
    const response = await client.getEntity({ tenant: "t1", type: "todo", id: "a" }, { onHeaders: (h) => (headers = h), headers: { "x-request-id": "req-42" } });
    assert.equal(response.entity?.id, "a");
    assert.deepEqual(response.entity?.data, { title: "hello" });
    assert.equal(seen.peer, "cli");
    assert.equal(seen.requestId, "req-42");
    assert.equal(headers?.get("umw-cache-status")[0], "umw; hit; ttl=5");
    client.close();
  });

  test("errors carry google.rpc.Status with ErrorInfo; unexpected errors hide their details", async () => {
    const client = createClient(QueryService, address, clientCredentials(certs.identity("cli")));
    await assert.rejects(client.getEntity({ tenant: "t1", type: "todo", id: "missing" }), (error: RpcError) => {
      assert.equal(error.code, Code.NOT_FOUND);
      assert.equal(error.reason, "ENTITY_NOT_FOUND");
      assert.deepEqual(error.metadata, { id: "missing" });
      assert.equal(error.headers["umw-cache-status"], "umw; hit; detail=negative", "headers set before a failure arrive as trailers");
      return true;
    });
    await assert.rejects(client.getEntity({ tenant: "t1", type: "todo", id: "crash" }), (error: RpcError) => {
      assert.equal(error.code, Code.INTERNAL);
      assert.doesNotMatch(error.message, /secret/);
      return true;
    });
    client.close();
  });

  test("a request that does not decode is INVALID_ARGUMENT (INVALID_MESSAGE), not INTERNAL: garbage bytes, a truncated field, invalid UTF-8", async () => {
    const raw = new GrpcClient(address, clientCredentials(certs.identity("cli")));
    const send = (bytes: Buffer) =>
      new Promise<{ code: number; reason?: string }>((resolve) =>
        raw.makeUnaryRequest(
          "/umw.v1.QueryService/GetEntity",
          (value: Buffer) => value,
          (value: Buffer) => value,
          bytes,
          (error) => resolve({ code: error?.code ?? 0, reason: error ? RpcError.fromServiceError(error).reason : undefined }),
        ),
      );
    // Field 1 (tenant) as a length-delimited value that runs past the end of the message.
    assert.deepEqual(await send(Buffer.from([0x0a, 0x7f, 0x61])), { code: Code.INVALID_ARGUMENT, reason: "INVALID_MESSAGE" });
    // A tag whose field number and wire type are out of range.
    assert.deepEqual(await send(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f])), { code: Code.INVALID_ARGUMENT, reason: "INVALID_MESSAGE" });
    // A string field that is not valid UTF-8 (proto3 strings must be): refused, not replaced by U+FFFD.
    assert.deepEqual(await send(Buffer.from([0x0a, 0x02, 0xff, 0xfe])), { code: Code.INVALID_ARGUMENT, reason: "INVALID_MESSAGE" });
    raw.close();
  });

  test("a client that expects a mesh identity refuses a server whose certificate names another", async () => {
    const right = createClient(QueryService, address, clientCredentials(certs.identity("cli"), "query"));
    assert.equal((await right.getEntity({ tenant: "t", type: "x", id: "a" }, { deadline: Date.now() + 5_000 })).entity?.id, "a");
    const wrong = createClient(QueryService, address, clientCredentials(certs.identity("cli"), "command"));
    await assert.rejects(wrong.getEntity({ tenant: "t", type: "x", id: "a" }, { deadline: Date.now() + 3_000 }), (error: unknown) => {
      assert.ok(error instanceof RpcError);
      assert.ok(error.code === Code.UNAVAILABLE || error.code === Code.DEADLINE_EXCEEDED, `code ${Code[error.code]}`);
      return true;
    });
    right.close();
    wrong.close();
  });

  test("the deadline and request id propagate to downstream calls", async () => {
    const client = createClient(QueryService, address, clientCredentials(certs.identity("cli")));
    const before = Date.now();
    await client.getEntity({ tenant: "t1", type: "todo", id: "forward" }, { timeoutMs: 4_000, headers: { "x-request-id": "chain-1" } });
    assert.ok(seen.deadline && seen.downstreamDeadline, "both hops saw a deadline");
    assert.ok(Math.abs(seen.deadline.getTime() - (before + 4_000)) < 1_000);
    assert.ok(Math.abs(seen.downstreamDeadline.getTime() - seen.deadline.getTime()) < 50, "downstream inherits the caller's deadline");
    assert.equal(seen.downstreamRequestId, "chain-1");
    client.close();
  });

  test("an expired deadline ends the call with DEADLINE_EXCEEDED", async () => {
    const client = createClient(QueryService, address, clientCredentials(certs.identity("cli")));
    await assert.rejects(client.getEntity({ tenant: "t1", type: "todo", id: "slow" }, { timeoutMs: 100 }), (error: RpcError) => error.code === Code.DEADLINE_EXCEEDED);
    releaseSlowCall();
    client.close();
  });
});

describe("graceful shutdown", () => {
  test("drains an in-flight call, refuses new ones, reports NOT_SERVING to Watch", async () => {
    const certs = testCerts(["query", "cli"]);
    let release: () => void = () => undefined;
    let started: () => void = () => undefined;
    const inFlight = new Promise<void>((resolve) => (started = resolve));
    const server = new MeshServer({ name: "query", host: "127.0.0.1", port: 0, credentials: serverCredentials(certs.identity("query")), log, drainTimeoutMs: 5_000 });
    server.addService(QueryService, {
      async getEntity(request) {
        started();
        await new Promise<void>((resolve) => (release = resolve));
        return { entity: { tenant: request.tenant, type: request.type, id: request.id, version: 3n } };
      },
      async batchGetEntities() {
        return {};
      },
      async listEntities() {
        return {};
      },
    });
    const address = `127.0.0.1:${await server.start()}`;
    const cli = certs.identity("cli");
    const { Health } = protoLoaderClients();
    const health = new Health(address, credentials.createSsl(cli.ca, cli.key, cli.cert));
    const statuses: string[] = [];
    const watch = health.watch!({ service: "" });
    watch.on("data", (response: { status: string }) => statuses.push(response.status));
    watch.on("error", () => undefined);

    const client = createClient(QueryService, address, clientCredentials(cli));
    const pending = client.getEntity({ tenant: "t", type: "todo", id: "x" });
    await inFlight;
    const stopped = server.stop();
    await new Promise((resolve) => setTimeout(resolve, 100));
    const late = createClient(QueryService, address, clientCredentials(cli));
    await assert.rejects(late.getEntity({ tenant: "t", type: "todo", id: "y" }, { timeoutMs: 2_000 }));
    release();
    const response = await pending;
    assert.equal(response.entity?.version, 3n, "the in-flight call finished during the drain");
    await stopped;
    assert.deepEqual(statuses.slice(0, 2), ["SERVING", "NOT_SERVING"]);
    watch.cancel();
    health.close();
    client.close();
    late.close();
    certs.remove();
  });

  test("a call that outlives the drain bound is cancelled", async () => {
    const certs = testCerts(["query", "cli"]);
    const server = new MeshServer({ name: "query", host: "127.0.0.1", port: 0, credentials: serverCredentials(certs.identity("query")), log, drainTimeoutMs: 300 });
    server.addService(QueryService, {
      getEntity: () => new Promise(() => undefined),
      async batchGetEntities() {
        return {};
      },
      async listEntities() {
        return {};
      },
    });
    const address = `127.0.0.1:${await server.start()}`;
    const client = createClient(QueryService, address, clientCredentials(certs.identity("cli")));
    const pending = client.getEntity({ tenant: "t", type: "todo", id: "x" });
    await new Promise((resolve) => setTimeout(resolve, 100));
    const startedAt = Date.now();
    await server.stop();
    assert.ok(Date.now() - startedAt < 2_000);
    await assert.rejects(pending, (error: RpcError) => error.code === Code.UNAVAILABLE || error.code === Code.CANCELLED);
    client.close();
    certs.remove();
  });
});
