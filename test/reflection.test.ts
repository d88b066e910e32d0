// grpcurl, the reference gRPC client, against every mesh server of `umw serve all --embedded` over
// mTLS, knowing nothing but what server reflection tells it: `list`, `describe` of every service,
// method and message, and a call to every method (valid and invalid requests; unary and streaming).
// The descriptors do not depend on the adapters, so the embedded mode serves the same ones.
//
// grpcurl is the one scripts/tools.sh installs into .data/bin (npm test runs it); without it this
// test fails.
//
//   scripts/tools.sh grpcurl && node --import tsx --test test/reflection.test.ts
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { clone, equals, fromBinary, type DescFile, type DescService } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, FileDescriptorSetSchema, type FileDescriptorProto } from "@bufbuild/protobuf/wkt";
import { Authorization } from "../gen/envoy/service/auth/v3/external_auth_pb.js";
import { CommandService } from "../gen/umw/v1/command_pb.js";
import { QueryService } from "../gen/umw/v1/query_pb.js";
import { RealtimeService } from "../gen/umw/v1/realtime_pb.js";
import { Health } from "../gen/health/v1/health_pb.js";
import { ServerReflection } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1Alpha } from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { ALL_SERVICES } from "../services/registry.js";
import { RateLimitService } from "../gen/envoy/service/ratelimit/v3/rls_pb.js";
import { freeServicePorts } from "./support/ports.js";
import { embeddedEnv } from "./support/embedded-env.js";

const GRPCURL = resolve(".data/bin/grpcurl");
const TENANT = "acme";

/** The application services of each mesh server (the edge speaks HTTP, not mesh gRPC). */
const SERVERS: Record<string, readonly DescService[]> = {
  query: [QueryService],
  command: [CommandService],
  realtime: [RealtimeService],
  relay: [],
  processor: [],
  "cache-updater": [],
  policy: [Authorization],
  ratelimit: [RateLimitService],
};
const EVERY_SERVER_HAS = [Health, ServerReflection, ServerReflectionV1Alpha];

interface Result {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** At most `limit` of the tasks at once (each grpcurl is a process and a TLS handshake). */
async function inPool<T>(tasks: Array<() => Promise<T>>, limit = 4): Promise<T[]> {
  const results: T[] = [];
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const index = next++;
      results[index] = await tasks[index]!();
    }
  };
  await Promise.all(Array.from({ length: limit }, worker));
  return results;
}

describe("reflection: grpcurl against every mesh server over mTLS", { timeout: 240_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), "umw-reflection-"));
  const certsDir = join(dir, "certs"); // created by the embedded mode
  let child: ChildProcess;
  let output = "";
  const ports: Record<string, number> = {};

  /** grpcurl as the `cli` mesh identity; `flags` go before the address, `rest` after it. */
  const grpcurl = (server: string, flags: string[], ...rest: string[]): Promise<Result> =>
    new Promise((resolvePromise, reject) => {
      const tls = ["-cacert", join(certsDir, "ca.crt"), "-cert", join(certsDir, "cli.crt"), "-key", join(certsDir, "cli.key")];
      const process = spawn(GRPCURL, [...tls, "-connect-timeout", "10", ...flags, `127.0.0.1:${ports[server]}`, ...rest]);
      let stdout = "";
      let stderr = "";
      process.stdout.on("data", (chunk) => (stdout += chunk));
      process.stderr.on("data", (chunk) => (stderr += chunk));
      process.on("error", reject);
      process.on("close", (code) => resolvePromise({ code: code ?? -1, stdout, stderr }));
    });

  /** A unary call that must succeed: its response, parsed. */
  const call = async (server: string, method: string, request: unknown, headers: string[] = []): Promise<any> => {
    const result = await grpcurl(server, ["-max-time", "20", ...headers.flatMap((header) => ["-H", header]), "-d", JSON.stringify(request)], method);
    assert.equal(result.code, 0, `${method}: ${result.stderr}`);
    return JSON.parse(result.stdout);
  };

  /** A call that must fail with the given status and ErrorInfo reason, which grpcurl decodes. */
  const rejected = async (server: string, method: string, request: unknown, status: { code: number; name: string }, reason: string, headers: string[] = []) => {
    const result = await grpcurl(server, ["-max-time", "20", ...headers.flatMap((header) => ["-H", header]), "-d", JSON.stringify(request)], method);
    assert.equal(result.code, 64 + status.code, `${method}: exit code ${result.code}: ${result.stderr}`);
    assert.match(result.stderr, new RegExp(`Code: ${status.name}\\b`), result.stderr);
    assert.match(result.stderr, new RegExp(`"reason": "${reason}"`), `the ErrorInfo is decoded: ${result.stderr}`);
    assert.doesNotMatch(result.stderr, /not recognized|not found:/i, result.stderr);
  };

  before(async () => {
    assert.ok(existsSync(GRPCURL), `grpcurl is not at ${GRPCURL}: run scripts/tools.sh grpcurl (npm test does)`);
    const portSettings = await freeServicePorts();
    for (const server of Object.keys(SERVERS)) ports[server] = portSettings[`UMW_${server.toUpperCase().replace("-", "_")}_PORT`]!;
    child = spawn(process.execPath, ["bin/umw.mjs", "serve", "all", "--embedded"], {
      env: embeddedEnv(portSettings, certsDir),
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout!.on("data", (chunk) => (output += chunk));
    child.stderr!.on("data", (chunk) => (output += chunk));
    const started = Date.now();
    while (!output.includes('"msg":"umw ready"')) {
      assert.equal(child.exitCode, null, `umw exited early:\n${output}`);
      assert.ok(Date.now() - started < 120_000, `umw not ready in 120 s:\n${output}`);
      await sleep(100);
    }
  });

  after(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const killer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await once(child, "exit");
      clearTimeout(killer);
    }
    rmSync(dir, { recursive: true, force: true });
  });

  test("the servers covered are every service but the edge", () => {
    assert.deepEqual(Object.keys(SERVERS).sort(), ALL_SERVICES.filter((name) => name !== "edge").sort());
  });

  test("list: exactly the server's services, Health and reflection v1 and v1alpha", async () => {
    for (const [server, services] of Object.entries(SERVERS)) {
      const result = await grpcurl(server, [], "list");
      assert.equal(result.code, 0, `${server}: ${result.stderr}`);
      const expected = [...services, ...EVERY_SERVER_HAS].map((service) => service.typeName).sort();
      assert.deepEqual(result.stdout.trim().split("\n").sort(), expected, server);
    }
  });

  test("describe: every service, every method, and every request and response message", async () => {
    const tasks: Array<() => Promise<void>> = [];
    for (const [server, services] of Object.entries(SERVERS)) {
      tasks.push(async () => {
        const all = await grpcurl(server, [], "describe");
        assert.equal(all.code, 0, `${server}: ${all.stderr}`);
        for (const service of [...services, ...EVERY_SERVER_HAS]) assert.match(all.stdout, new RegExp(`^${service.typeName} is a service:$`, "m"), server);
      });
      for (const service of [...services, ...EVERY_SERVER_HAS]) {
        for (const method of service.methods) {
          const symbol = `${service.typeName}.${method.name}`;
          tasks.push(async () => {
            const result = await grpcurl(server, [], "describe", symbol);
            assert.equal(result.code, 0, `${server} ${symbol}: ${result.stderr}`);
            assert.match(result.stdout, new RegExp(`^${symbol} is a method:$`, "m"));
            const stream = (streaming: boolean) => (streaming ? "stream " : "");
            const signature = `rpc ${method.name} ( ${stream(method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming")}.${method.input.typeName} ) returns ( ${stream(method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming")}.${method.output.typeName} )`;
            assert.ok(result.stdout.includes(signature), `${server} ${symbol}: expected ${signature} in\n${result.stdout}`);
          });
          for (const message of [method.input, method.output]) {
            // -msg-template makes grpcurl resolve every nested and imported type of the message.
            tasks.push(async () => {
              const result = await grpcurl(server, ["-msg-template"], "describe", message.typeName);
              assert.equal(result.code, 0, `${server} ${message.typeName}: ${result.stderr}`);
              assert.match(result.stdout, new RegExp(`^${message.typeName} is a message:$`, "m"));
              for (const field of message.fields) assert.match(result.stdout, new RegExp(`\\b${field.name} = ${field.number}\\b`), `${message.typeName}.${field.name}`);
              assert.match(result.stdout, /Message template:\n\{/);
            });
          }
        }
      }
    }
    await inPool(tasks);
  });

  test("describe: a message with a google.protobuf.Struct and a FieldMask resolves its imports", async () => {
    const result = await grpcurl("command", ["-msg-template"], "describe", "umw.v1.PatchEntityRequest");
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /\.google\.protobuf\.Struct data = 4;/);
    assert.match(result.stdout, /\.google\.protobuf\.FieldMask update_mask = 5;/);
  });

  test("reflection serves each file's real descriptor with its imports (compared with gen/umw.binpb from buf)", async () => {
    const built = new Map(fromBinary(FileDescriptorSetSchema, readFileSync("gen/umw.binpb")).file.map((file) => [file.name, file]));
    const withoutSourceInfo = (file: FileDescriptorProto) => {
      const copy = clone(FileDescriptorProtoSchema, file);
      copy.sourceCodeInfo = undefined;
      return copy;
    };
    let compared = 0;
    for (const [server, services] of Object.entries(SERVERS)) {
      // umw's own services: Envoy's RateLimitService (ratelimit) is not in the edge's descriptor set to compare with.
      for (const service of services.filter((service) => built.has(service.file.proto.name))) {
        for (const version of ["v1", "v1alpha"]) {
          const reply = await call(server, `grpc.reflection.${version}.ServerReflection/ServerReflectionInfo`, { fileContainingSymbol: service.typeName });
          const served = (reply.fileDescriptorResponse.fileDescriptorProto as string[]).map((bytes) => fromBinary(FileDescriptorProtoSchema, Buffer.from(bytes, "base64")));
          const names = served.map((file) => file.name);
          assert.equal(names[0], service.file.proto.name, "the file that declares the symbol comes first");
          // Every file buf compiled for this service comes along: its imports, theirs, and so on
          // (for a service outside umw.binpb, Envoy's Authorization, the imports its generated file declares).
          const generated = new Map<string, DescFile>();
          const collect = (file: DescFile) => {
            if (generated.has(file.proto.name)) return;
            generated.set(file.proto.name, file);
            for (const dependency of file.dependencies) collect(dependency);
          };
          collect(service.file);
          const expected = new Set<string>();
          const visit = (name: string) => {
            if (expected.has(name)) return;
            expected.add(name);
            for (const dependency of built.get(name)?.dependency ?? generated.get(name)?.proto.dependency ?? []) visit(dependency);
          };
          visit(service.file.proto.name);
          assert.deepEqual([...names].sort(), [...expected].sort(), `${server} ${version}: the files of ${service.typeName}`);
          for (const file of served.filter((file) => file.name.startsWith("umw/") || file.name.startsWith("google/api/"))) {
            assert.ok(equals(FileDescriptorProtoSchema, file, withoutSourceInfo(built.get(file.name)!)), `${server} ${version}: ${file.name} differs from buf's`);
            compared++;
          }
        }
      }
    }
    assert.ok(compared >= 12, `compared ${compared} descriptors`);
  });

  test("reflection requests: symbols, extensions, and proper errors for unknown names", async () => {
    const reflect = (request: unknown) => call("query", "grpc.reflection.v1.ServerReflection/ServerReflectionInfo", request);
    const names = async (request: unknown) =>
      ((await reflect(request)).fileDescriptorResponse.fileDescriptorProto as string[]).map((bytes) => fromBinary(FileDescriptorProtoSchema, Buffer.from(bytes, "base64")).name);

    assert.deepEqual((await reflect({ listServices: "*" })).listServicesResponse.service.map((service: { name: string }) => service.name).sort(), [
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
      "umw.v1.QueryService",
    ]);
    const queryFiles = await names({ fileByFilename: "umw/v1/query.proto" });
    assert.equal(queryFiles[0], "umw/v1/query.proto");
    for (const file of ["umw/v1/entity.proto", "google/api/annotations.proto", "google/protobuf/struct.proto", "google/protobuf/descriptor.proto"]) assert.ok(queryFiles.includes(file), `query.proto comes with ${file}`);
    assert.deepEqual(await names({ fileByFilename: "grpc/reflection/v1alpha/reflection.proto" }), ["grpc/reflection/v1alpha/reflection.proto"]);
    assert.equal((await names({ fileContainingSymbol: "umw.v1.QueryService.GetEntity" }))[0], "umw/v1/query.proto");
    assert.equal((await names({ fileContainingSymbol: "umw.v1.GetEntityRequest.min_version" }))[0], "umw/v1/query.proto");
    assert.equal((await names({ fileContainingSymbol: "umw.v1.Entity" }))[0], "umw/v1/entity.proto");
    assert.equal((await names({ fileContainingSymbol: "google.protobuf.Struct" }))[0], "google/protobuf/struct.proto");
    assert.equal((await names({ fileContainingSymbol: "google.rpc.ErrorInfo" }))[0], "google/rpc/error_details.proto");
    assert.equal((await names({ fileContainingSymbol: "grpc.health.v1.Health" }))[0], "health/v1/health.proto");
    // google.api.http is extension 72295728 of google.protobuf.MethodOptions.
    assert.equal((await names({ fileContainingExtension: { containingType: "google.protobuf.MethodOptions", extensionNumber: 72295728 } }))[0], "google/api/annotations.proto");
    const numbers = await reflect({ allExtensionNumbersOfType: "google.protobuf.MethodOptions" });
    assert.deepEqual(numbers.allExtensionNumbersResponse, { baseTypeName: "google.protobuf.MethodOptions", extensionNumber: [72295728] });

    for (const request of [
      { fileByFilename: "no/such.proto" },
      { fileContainingSymbol: "umw.v1.NoSuchThing" },
      { fileContainingSymbol: "umw.v1.QueryService.NoSuchMethod" },
      { fileContainingExtension: { containingType: "google.protobuf.MethodOptions", extensionNumber: 1 } },
      { allExtensionNumbersOfType: "umw.v1.NoSuchMessage" },
    ]) {
      const reply = await reflect(request);
      assert.equal(reply.errorResponse?.errorCode, 5, `NOT_FOUND for ${JSON.stringify(request)}: ${JSON.stringify(reply)}`);
      assert.deepEqual(reply.originalRequest, request);
    }
    assert.match((await grpcurl("query", [], "describe", "umw.v1.NoSuchThing")).stderr, /Symbol not found|not found/);
  });

  test("Health: Check and List on every server, Watch streams the status", async () => {
    for (const [server, services] of Object.entries(SERVERS)) {
      assert.deepEqual(await call(server, "grpc.health.v1.Health/Check", {}), { status: "SERVING" }, server);
      for (const service of services) assert.deepEqual(await call(server, "grpc.health.v1.Health/Check", { service: service.typeName }), { status: "SERVING" });
      const list = await call(server, "grpc.health.v1.Health/List", {});
      assert.deepEqual(Object.keys(list.statuses).sort(), ["", ...services.map((service) => service.typeName)].sort(), server);
    }
    const unknown = await grpcurl("relay", ["-d", JSON.stringify({ service: "no.such.Service" })], "grpc.health.v1.Health/Check");
    assert.equal(unknown.code, 64 + 5, unknown.stderr);
    assert.match(unknown.stderr, /Code: NotFound/);
    const watch = await grpcurl("processor", ["-max-time", "2", "-d", "{}"], "grpc.health.v1.Health/Watch");
    assert.equal(watch.code, 64 + 4, `Watch ends at -max-time with DeadlineExceeded: ${watch.stderr}`);
    assert.match(watch.stdout, /"status": "SERVING"/);
  });

  let entityId: string;
  const key = (name: string) => `idempotency-key: "${name}-${Date.now()}"`;

  test("CommandService: CreateEntity (a Struct and metadata), WatchCommand (a stream), GetCommand, and errors", async () => {
    const created = await call("command", "umw.v1.CommandService/CreateEntity", { tenant: TENANT, type: "todo", data: { title: "from grpcurl" } }, [key("create")]);
    assert.equal(created.receipt.state, "COMMAND_STATE_ACCEPTED");
    entityId = created.receipt.entityId;

    // WatchCommand streams the command's status until it is terminal.
    const watch = await grpcurl("command", ["-max-time", "20", "-d", JSON.stringify({ tenant: TENANT, commandId: created.receipt.commandId })], "umw.v1.CommandService/WatchCommand");
    assert.equal(watch.code, 0, watch.stderr);
    assert.match(watch.stdout, /"state": "COMMAND_STATE_APPLIED"/);
    const status = await call("command", "umw.v1.CommandService/GetCommand", { tenant: TENANT, commandId: created.receipt.commandId });
    assert.equal(status.command.state, "COMMAND_STATE_APPLIED");
    assert.equal(status.command.version, "1");

    await rejected("command", "umw.v1.CommandService/CreateEntity", { tenant: TENANT, type: "todo", data: { title: 1 } }, { code: 3, name: "InvalidArgument" }, "SCHEMA_VIOLATION", [key("bad")]);
    await rejected("command", "umw.v1.CommandService/CreateEntity", { tenant: TENANT, type: "todo", data: { title: "no key" } }, { code: 3, name: "InvalidArgument" }, "IDEMPOTENCY_KEY_MISSING");
    await rejected("command", "umw.v1.CommandService/GetCommand", { tenant: TENANT, commandId: "00000000-0000-0000-0000-000000000000" }, { code: 5, name: "NotFound" }, "COMMAND_NOT_FOUND");
  });

  test("QueryService: every method decodes entities (Struct data, int64 version) and errors", async () => {
    assert.ok(entityId, "the CommandService test created an entity");
    const got = await call("query", "umw.v1.QueryService/GetEntity", { tenant: TENANT, type: "todo", id: entityId, minVersion: "1" });
    assert.deepEqual(got.entity.data, { title: "from grpcurl" });
    assert.equal(got.entity.version, "1");
    const batch = await call("query", "umw.v1.QueryService/BatchGetEntities", { tenant: TENANT, type: "todo", ids: [entityId, "no-such-todo"] });
    assert.deepEqual(batch.entities.map((entity: { id: string }) => entity.id), [entityId]);
    assert.deepEqual(batch.missingIds, ["no-such-todo"]);
    const list = await call("query", "umw.v1.QueryService/ListEntities", { tenant: TENANT, type: "todo", pageSize: 10 });
    assert.ok(list.entities.some((entity: { id: string }) => entity.id === entityId), JSON.stringify(list));
    await rejected("query", "umw.v1.QueryService/GetEntity", { tenant: TENANT, type: "todo", id: "no-such-todo" }, { code: 5, name: "NotFound" }, "ENTITY_NOT_FOUND");
    await rejected("query", "umw.v1.QueryService/GetEntity", { tenant: TENANT, type: "no-such-type", id: "x" }, { code: 5, name: "NotFound" }, "UNKNOWN_RESOURCE_TYPE");
  });

  test("RealtimeService/Subscribe streams a snapshot that grpcurl decodes", async () => {
    assert.ok(entityId, "the CommandService test created an entity");
    const request = { tenant: TENANT, topics: [{ entity: { type: "todo", id: entityId } }], snapshot: true };
    const result = await grpcurl("realtime", ["-max-time", "3", "-d", JSON.stringify(request)], "umw.v1.RealtimeService/Subscribe");
    assert.equal(result.code, 64 + 4, `the stream runs until -max-time: ${result.stderr}`);
    assert.match(result.stdout, /"snapshot": \{/);
    assert.ok(result.stdout.includes(`"id": "${entityId}"`), result.stdout);
    await rejected("realtime", "umw.v1.RealtimeService/Subscribe", { tenant: TENANT }, { code: 3, name: "InvalidArgument" }, "NO_TOPICS");
  });

  test("CommandService: UpdateEntity, PatchEntity (a FieldMask), DeleteEntity", async () => {
    assert.ok(entityId, "the CommandService test created an entity");
    const updated = await call("command", "umw.v1.CommandService/UpdateEntity", { tenant: TENANT, type: "todo", id: entityId, data: { title: "replaced" }, expectedVersion: "1" }, [key("update")]);
    assert.equal(updated.receipt.state, "COMMAND_STATE_ACCEPTED");
    // grpcurl's JSON reads a FieldMask in its message form, not the "a,b" string of proto3 JSON.
    const patched = await call("command", "umw.v1.CommandService/PatchEntity", { tenant: TENANT, type: "todo", id: entityId, data: { done: true }, updateMask: { paths: ["done"] } }, [key("patch")]);
    assert.equal(patched.receipt.state, "COMMAND_STATE_ACCEPTED");
    const deleted = await call("command", "umw.v1.CommandService/DeleteEntity", { tenant: TENANT, type: "todo", id: entityId }, [key("delete")]);
    assert.equal(deleted.receipt.state, "COMMAND_STATE_ACCEPTED");
    await rejected("command", "umw.v1.CommandService/UpdateEntity", { tenant: TENANT, type: "todo", id: entityId, data: { title: 2 } }, { code: 3, name: "InvalidArgument" }, "SCHEMA_VIOLATION", [key("bad-update")]);
  });

  test("without a client certificate grpcurl gets nothing, not even reflection", async () => {
    const result = await new Promise<Result>((resolvePromise) => {
      const process = spawn(GRPCURL, ["-cacert", join(certsDir, "ca.crt"), "-max-time", "3", `127.0.0.1:${ports.query}`, "list"]);
      let stderr = "";
      process.stderr.on("data", (chunk) => (stderr += chunk));
      process.on("close", (code) => resolvePromise({ code: code ?? -1, stdout: "", stderr }));
    });
    assert.notEqual(result.code, 0, result.stderr);
    assert.match(result.stderr, /Failed to dial target host/, result.stderr);
  });
});
