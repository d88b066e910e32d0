// Mesh identity and authorization against real servers over mTLS: certificates with their own
// usages and names, clients that check the service name of the server, and the table of which mesh
// identity may call which method (UMW_MESH_AUTHZ) in `umw serve all --embedded` and `umw control-plane`,
// seen by Node clients, the edge and grpcurl (scripts/tools.sh installs it into .data/bin).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { X509Certificate, randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import { credentials } from "@grpc/grpc-js";
import { pino } from "pino";
import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { stringify } from "yaml";
import { RegistrationService } from "../gen/umw/controlplane/v1/registration_pb.js";
import { CommandService } from "../gen/umw/v1/command_pb.js";
import { QueryService } from "../gen/umw/v1/query_pb.js";
import { RealtimeService } from "../gen/umw/v1/realtime_pb.js";
import { createClient } from "../runtime/client.js";
import { loadConfig } from "../runtime/config.js";
import { createDevCertificates } from "../runtime/certs.js";
import { Code, RpcError } from "../runtime/errors.js";
import { rootLogger } from "../runtime/logger.js";
import { DEFAULT_MESH_AUTHZ } from "../runtime/mesh-authorization.js";
import { MeshServer } from "../runtime/server.js";
import { composeRuntime } from "../services/compose.js";
import { DESCRIPTOR_SET_PATH, registerInstance, startControlPlane } from "../services/control-plane/index.js";
import { edgeService } from "../services/edge/index.js";
import { clientCredentials, loadIdentity, serverCredentials, type MeshIdentity } from "../runtime/tls.js";
import { MESH_IDENTITIES } from "../services/registry.js";
import { testCerts, type TestCerts } from "./support/certs.js";
import { devAuthorization, embeddedEnv } from "./support/embedded-env.js";
import { principalHeaders } from "../runtime/principal.js";
import { freePort, freeServicePorts } from "./support/ports.js";
import { waitFor } from "./support/wait.js";

const GRPCURL = resolve(".data/bin/grpcurl");
const SERVER_AUTH = "1.3.6.1.5.5.7.3.1";
const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";
const log = rootLogger("silent");
const deadline = () => Date.now() + 5_000;

/** What a call ended with: "OK", or the status code's name and the ErrorInfo reason. */
async function outcome(call: Promise<unknown>): Promise<string> {
  try {
    await call;
    return "OK";
  } catch (error) {
    assert.ok(error instanceof RpcError, String(error));
    return `${Code[error.code]} ${error.reason}`;
  }
}

/** A QueryService whose GetEntity answers the id it was asked for. */
function queryServer(identity: MeshIdentity): MeshServer {
  const server = new MeshServer({ name: identity.name, host: "127.0.0.1", port: 0, credentials: serverCredentials(identity), log, drainTimeoutMs: 200 });
  return server.addService(QueryService, {
    getEntity: async (request) => ({ entity: { tenant: request.tenant, type: request.type, id: request.id, version: 1n } }),
    batchGetEntities: async () => ({ entities: [] }),
    listEntities: async () => ({ entities: [] }),
  });
}

const get = (client: ReturnType<typeof createClient<typeof QueryService>>, headers: Record<string, string> = {}) =>
  client.getEntity({ tenant: "acme", type: "todo", id: "a" }, { deadline: deadline(), headers });

describe("mesh certificates: usages and names", () => {
  let certs: TestCerts;
  const servers: MeshServer[] = [];
  const serve = async (identity: MeshIdentity) => {
    const server = queryServer(identity);
    servers.push(server);
    return `127.0.0.1:${await server.start()}`;
  };

  before(() => {
    certs = testCerts(MESH_IDENTITIES);
  });
  after(async () => {
    await Promise.all(servers.map((server) => server.stop()));
    certs.remove();
  });

  test("servers get serverAuth certificates naming the service; clients clientAuth ones naming only themselves", () => {
    const read = (file: string) => new X509Certificate(readFileSync(join(certs.dir, file)));
    for (const { name, role } of MESH_IDENTITIES) {
      const own = read(`${name}.crt`);
      assert.equal(own.checkIssued(read("ca.crt")), true, name);
      if (role === "client") {
        assert.deepEqual(own.keyUsage, [CLIENT_AUTH], `${name}.crt is a client certificate`);
        assert.equal(own.subjectAltName, `DNS:${name}`);
      } else {
        assert.deepEqual(own.keyUsage, [SERVER_AUTH], `${name}.crt is a server certificate`);
        assert.equal(own.subjectAltName, `DNS:${name}, DNS:localhost, IP Address:127.0.0.1`);
      }
      assert.equal(existsSync(join(certs.dir, `${name}.client.crt`)), role === "both", `${name}.client.crt exists only for a server that also calls`);
      if (role === "both") {
        assert.deepEqual(read(`${name}.client.crt`).keyUsage, [CLIENT_AUTH]);
        assert.equal(read(`${name}.client.crt`).subjectAltName, `DNS:${name}`);
      }
    }
  });

  test("a client certificate cannot serve", async () => {
    const address = await serve(certs.identity("cli"));
    const client = createClient(QueryService, address, clientCredentials(certs.identity("edge")));
    assert.equal(await outcome(get(client)), "UNAVAILABLE UNAVAILABLE");
    client.close();
  });

  test("a server certificate cannot call: the server refuses it in the handshake", async () => {
    const address = await serve(certs.identity("query"));
    const edge = createClient(QueryService, address, clientCredentials(certs.identity("edge")));
    assert.equal(await outcome(get(edge)), "OK", "control: a client certificate of the mesh is accepted");
    // The processor serves only Health: it has no client certificate, so it cannot call at all.
    const processor = createClient(QueryService, address, clientCredentials(certs.identity("processor")));
    assert.equal(await outcome(get(processor)), "UNAVAILABLE UNAVAILABLE");
    // The query service calls with query.client.crt; its server certificate is no client certificate.
    const query = certs.identity("query");
    const serverCertAsClient = createClient(QueryService, address, credentials.createSsl(query.ca, query.key, query.cert));
    assert.equal(await outcome(get(serverCertAsClient)), "UNAVAILABLE UNAVAILABLE");
    for (const client of [edge, processor, serverCertAsClient]) client.close();
  });

  test("a client that expects a service refuses a server presenting another name", async () => {
    const address = await serve(certs.identity("command"));
    const expectingQuery = createClient(QueryService, address, clientCredentials(certs.identity("edge"), "query"));
    assert.equal(await outcome(get(expectingQuery)), "UNAVAILABLE UNAVAILABLE");
    const expectingCommand = createClient(QueryService, address, clientCredentials(certs.identity("edge"), "command"));
    assert.equal(await outcome(get(expectingCommand)), "OK");
    for (const client of [expectingQuery, expectingCommand]) client.close();
  });

  test("the registration client refuses a control plane whose certificate names another service", async () => {
    const lines: string[] = [];
    const captured = pino({ level: "info" }, { write: (line: string) => void lines.push(line) });
    const startAs = (name: string) =>
      startControlPlane({
        host: "127.0.0.1",
        port: 0,
        credentials: serverCredentials(certs.identity(name)),
        log: captured,
        edge: { listenerPort: 8080, corsOrigins: ["*"], descriptor: { bytes: readFileSync(DESCRIPTOR_SET_PATH) } },
      });
    const impostor = await startAs("command");
    const genuine = await startAs("control-plane");
    const join = (controlPlane: string) => registerInstance({ controlPlane, identity: certs.identity("query"), service: "query", host: "127.0.0.1", port: 7001, log: captured });
    const refused = join(impostor.address);
    const accepted = join(genuine.address);
    try {
      await waitFor(() => genuine.endpoints("query").length === 1, { what: "the instance registered with the genuine control plane" });
      await waitFor(() => lines.some((line) => line.includes("control plane registration lost") && line.includes("not control-plane")), {
        what: "the registration client refusing the impostor's certificate",
      });
      assert.equal(impostor.endpoints("query").length, 0, "nothing registered with the impostor");
    } finally {
      await Promise.all([refused.leave(), accepted.leave()]);
      await Promise.all([impostor.stop(), genuine.stop()]);
    }
  });

  test("without loopback names (umw certs --no-loopback), mesh clients still connect by IP; a plain host name check does not", async () => {
    const named = testCerts(["query", "edge"], { loopback: false });
    try {
      assert.equal(new X509Certificate(readFileSync(join(named.dir, "query.crt"))).subjectAltName, "DNS:query");
      const address = await serve(named.identity("query"));
      const mesh = createClient(QueryService, address, clientCredentials(named.identity("edge"), "query"));
      assert.equal(await outcome(get(mesh)), "OK");
      const byHost = createClient(QueryService, address, clientCredentials(named.identity("edge")));
      assert.equal(await outcome(get(byHost)), "UNAVAILABLE UNAVAILABLE");
      for (const client of [mesh, byHost]) client.close();
    } finally {
      named.remove();
    }
  });
});

interface GrpcurlResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function grpcurl(certsDir: string, identity: string, address: string, args: string[]): Promise<GrpcurlResult> {
  const tls = ["-cacert", join(certsDir, "ca.crt"), "-cert", join(certsDir, `${identity}.crt`), "-key", join(certsDir, `${identity}.key`)];
  return new Promise((resolvePromise, reject) => {
    const child = spawn(GRPCURL, [...tls, "-connect-timeout", "10", "-max-time", "20", ...args.slice(0, -1), address, args.at(-1)!]);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => (stdout += chunk));
    child.stderr.on("data", (chunk) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (code) => resolvePromise({ code: code ?? -1, stdout, stderr }));
  });
}

/** grpcurl's view of a refusal: exit 64 + code, the status name and the decoded ErrorInfo reason. */
function assertDenied(result: GrpcurlResult, reason: string): void {
  assert.equal(result.code, 64 + Code.PERMISSION_DENIED, result.stderr);
  assert.match(result.stderr, /Code: PermissionDenied/, result.stderr);
  assert.match(result.stderr, new RegExp(`"reason": "${reason}"`), result.stderr);
}

async function spawnUntil(args: string[], env: NodeJS.ProcessEnv, ready: string, what: string): Promise<{ child: ChildProcess; output: () => string }> {
  let output = "";
  const child = spawn(process.execPath, ["bin/umw.mjs", ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
  child.stdout!.on("data", (chunk) => (output += chunk));
  child.stderr!.on("data", (chunk) => (output += chunk));
  await waitFor(
    () => {
      assert.equal(child.exitCode, null, `${what} exited early:\n${output}`);
      return output.includes(ready);
    },
    { what, timeoutMs: 120_000, everyMs: 100 },
  );
  return { child, output: () => output };
}

async function kill(child: ChildProcess | undefined): Promise<void> {
  if (child && child.exitCode === null && child.signalCode === null) {
    child.kill("SIGKILL");
    await once(child, "exit");
  }
}

describe("the mesh authorization table in umw serve all --embedded", { timeout: 240_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), "umw-mesh-authz-"));
  const certsDir = join(dir, "certs");
  let child: ChildProcess | undefined;
  let ports: Record<string, number>;
  const clients: { close(): void }[] = [];
  const identity = (name: string) => loadIdentity(certsDir, name);
  const query = () => `127.0.0.1:${ports.UMW_QUERY_PORT}`;
  const command = () => `127.0.0.1:${ports.UMW_COMMAND_PORT}`;
  const commandAs = (name: string) => {
    const client = createClient(CommandService, command(), clientCredentials(identity(name), "command"));
    clients.push(client);
    return client;
  };
  const queryAs = (name: string) => {
    const client = createClient(QueryService, query(), clientCredentials(identity(name), "query"));
    clients.push(client);
    return client;
  };
  const create = (client: ReturnType<typeof commandAs>, id: string, headers: Record<string, string> = {}) =>
    client.createEntity({ tenant: "acme", type: "todo", id, data: { title: "authz" } }, { deadline: deadline(), headers: { "idempotency-key": randomUUID(), ...headers } });

  before(async () => {
    assert.ok(existsSync(GRPCURL), `grpcurl is not at ${GRPCURL}: run scripts/tools.sh grpcurl (npm test does)`);
    // The mesh's certificates, plus a client certificate for the processor, which has none in the
    // mesh: the table must stop a worker even if it got hold of one.
    createDevCertificates({ dir: certsDir, identities: MESH_IDENTITIES.map((spec) => (spec.name === "processor" ? { name: "processor", role: "both" as const } : spec)), days: 2 });
    // The built-in table, but the cli may only read (a file, as an operator would deploy it).
    const table = join(dir, "mesh-authz.yaml");
    writeFileSync(table, stringify({ ...DEFAULT_MESH_AUTHZ, cli: ["umw.v1.QueryService/*", "umw.v1.CommandService/GetCommand"] }));
    ports = await freeServicePorts();
    ({ child } = await spawnUntil(["serve", "all", "--embedded"], embeddedEnv(ports, certsDir, { UMW_MESH_AUTHZ: table }), "umw ready", "umw serve all --embedded"));
  });

  after(async () => {
    for (const client of clients) client.close();
    await kill(child);
    rmSync(dir, { recursive: true, force: true });
  });

  test("the query service's certificate calling CreateEntity: PERMISSION_DENIED, and nothing is created", async () => {
    assert.equal(await outcome(create(commandAs("query"), "by-query")), "PERMISSION_DENIED MESH_METHOD_DENIED");
    assert.equal(await outcome(queryAs("edge").getEntity({ tenant: "acme", type: "todo", id: "by-query" }, { deadline: deadline() })), "NOT_FOUND ENTITY_NOT_FOUND");
  });

  test("a stream is refused the same way: the command service's certificate subscribing to realtime", async () => {
    const subscribe = async (as: string) => {
      const realtime = createClient(RealtimeService, `127.0.0.1:${ports.UMW_REALTIME_PORT}`, clientCredentials(identity(as), "realtime"));
      clients.push(realtime);
      // The first message (the snapshot) is enough.
      for await (const _ of realtime.subscribe({ tenant: "acme", topics: [{ target: { case: "type", value: "todo" } }], snapshot: true }, { deadline: deadline() })) return;
    };
    assert.equal(await outcome(subscribe("edge")), "OK", "control: the edge subscribes");
    assert.equal(await outcome(subscribe("command")), "PERMISSION_DENIED MESH_METHOD_DENIED");
  });

  test("a worker may call nothing, with or without asserting a user", async () => {
    assert.equal(await outcome(create(commandAs("processor"), "by-processor")), "PERMISSION_DENIED MESH_METHOD_DENIED");
    assert.equal(await outcome(get(queryAs("processor"), { "x-umw-principal": "alice" })), "PERMISSION_DENIED MESH_METHOD_DENIED");
  });

  test("a peer that may call a method but is no edge may not assert who the call acts for", async () => {
    assert.equal(await outcome(get(queryAs("cli"))), "NOT_FOUND ENTITY_NOT_FOUND", "control: the cli may read");
    assert.equal(await outcome(get(queryAs("cli"), { "x-umw-principal": "alice" })), "PERMISSION_DENIED PRINCIPAL_ASSERTION_DENIED");
    assert.equal(await outcome(get(queryAs("query"), { "x-umw-tenant": "acme" })), "PERMISSION_DENIED MESH_METHOD_DENIED");
  });

  test("the edge may write, asserting a user; so may a user through the edge's REST", async () => {
    const alice = principalHeaders({ kind: "user", subject: "alice", tenant: "acme", scopes: ["entities:write"], roles: [], expiresAt: Date.now() + 600_000 });
    assert.equal(await outcome(create(commandAs("edge"), "by-edge", alice)), "OK");
    const post = await fetch(`http://127.0.0.1:${ports.UMW_EDGE_PORT}/v1/tenants/acme/types/todo/entities`, {
      method: "POST",
      headers: { authorization: await devAuthorization(certsDir, ports.UMW_EDGE_PORT!, "acme"), "content-type": "application/json", "idempotency-key": `"${randomUUID()}"` },
      body: JSON.stringify({ title: "through the edge" }),
    });
    assert.equal(post.status, 202, await post.text());
    // Applied by the processor, read back through the query service as the edge.
    await waitFor(
      async () => (await outcome(queryAs("edge").getEntity({ tenant: "acme", type: "todo", id: "by-edge" }, { deadline: deadline() }))) === "OK",
      { what: "the edge's entity by-edge, applied" },
    );
  });

  test("grpcurl with the cli certificate: reflection and health open, reads allowed, writes and assertions refused", async () => {
    const list = await grpcurl(certsDir, "cli", command(), ["list"]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /^umw\.v1\.CommandService$/m);
    const health = await grpcurl(certsDir, "cli", `127.0.0.1:${ports.UMW_PROCESSOR_PORT}`, ["-d", "{}", "grpc.health.v1.Health/Check"]);
    assert.equal(health.code, 0, health.stderr);
    assert.match(health.stdout, /"status": "SERVING"/);
    const read = await grpcurl(certsDir, "cli", query(), ["-d", '{"tenant":"acme","type":"todo","id":"by-edge"}', "umw.v1.QueryService/GetEntity"]);
    assert.equal(read.code, 0, read.stderr);
    assert.match(read.stdout, /"id": "by-edge"/);
    const status = await grpcurl(certsDir, "cli", command(), ["-d", `{"tenant":"acme","commandId":"${randomUUID()}"}`, "umw.v1.CommandService/GetCommand"]);
    assert.equal(status.code, 64 + Code.NOT_FOUND, `GetCommand is allowed (an unknown command is NOT_FOUND): ${status.stderr}`);
    assertDenied(
      await grpcurl(certsDir, "cli", command(), ["-H", `idempotency-key: ${randomUUID()}`, "-d", '{"tenant":"acme","type":"todo","data":{"title":"cli"}}', "umw.v1.CommandService/CreateEntity"]),
      "MESH_METHOD_DENIED",
    );
    assertDenied(await grpcurl(certsDir, "cli", query(), ["-H", "x-umw-principal: alice", "-d", '{"tenant":"acme","type":"todo","id":"x"}', "umw.v1.QueryService/GetEntity"]), "PRINCIPAL_ASSERTION_DENIED");
  });

  test("the edge (umw serve edge) refuses an upstream whose certificate names another service", async () => {
    const port = await freePort();
    // The query service's address points at the command service: a mesh member, the wrong one.
    // About the upstream's certificate, not the caller: authentication explicitly off (test/edge/auth.test.ts covers it).
    const config = loadConfig({ UMW_CONFIG: "", UMW_CERTS_DIR: certsDir, UMW_EDGE_PORT: String(port), UMW_QUERY_ADDRESS: command(), UMW_COMMAND_ADDRESS: command(), UMW_AUTH_MODE: "none" });
    const running = await edgeService.start(await composeRuntime(config, log, undefined as never));
    try {
      const misrouted = await fetch(`http://127.0.0.1:${port}/v1/tenants/acme/types/todo/entities/by-edge`);
      assert.equal(misrouted.status, 503, await misrouted.text());
      const status = await fetch(`http://127.0.0.1:${port}/v1/tenants/acme/commands/${randomUUID()}`);
      assert.equal(status.status, 404, `control: the command service is reached (an unknown command): ${await status.text()}`);
    } finally {
      await running.stop();
    }
  });

  test("a server certificate presented as a client is refused by the real server", async () => {
    const relay = identity("relay");
    const client = createClient(QueryService, query(), credentials.createSsl(relay.ca, relay.key, relay.cert));
    clients.push(client);
    assert.equal(await outcome(get(client)), "UNAVAILABLE UNAVAILABLE");
  });
});

describe("the mesh authorization table on umw control-plane", { timeout: 120_000 }, () => {
  let certs: TestCerts;
  let child: ChildProcess | undefined;
  let address: string;

  before(async () => {
    certs = testCerts(MESH_IDENTITIES);
    const port = await freePort();
    address = `127.0.0.1:${port}`;
    const env = { ...process.env, UMW_CONFIG: "", UMW_CERTS_DIR: certs.dir, UMW_CONTROL_PLANE_PORT: String(port), UMW_EDGE_PORT: String(await freePort()), UMW_LOG_LEVEL: "info" };
    ({ child } = await spawnUntil(["control-plane"], env, "xds control plane listening", "umw control-plane"));
  });
  after(async () => {
    await kill(child);
    certs.remove();
  });

  test("a routed service registers itself; the cli and the edge may not register anything", async () => {
    const query = createClient(RegistrationService, address, clientCredentials(certs.identity("query"), "control-plane"));
    const stopped = new AbortController();
    try {
      for await (const response of query.register({ service: "query", host: "127.0.0.1", port: 7001 }, { signal: stopped.signal })) {
        assert.equal(response.endpoint, "127.0.0.1:7001");
        break;
      }
    } finally {
      stopped.abort();
      query.close();
    }
    const edge = createClient(RegistrationService, address, clientCredentials(certs.identity("edge"), "control-plane"));
    const refused = outcome((async () => {
      for await (const _ of edge.register({ service: "query", host: "127.0.0.1", port: 7001 }, { deadline: deadline() })) return;
    })());
    assert.equal(await refused, "PERMISSION_DENIED MESH_METHOD_DENIED");
    edge.close();
    // The control plane serves no reflection: grpcurl reads the service from its proto, and shows
    // the ErrorInfo (whose proto it lacks) as raw bytes, decoded here.
    const proto = ["-import-path", "services/control-plane/proto", "-proto", "umw/controlplane/v1/registration.proto"];
    const deregister = await grpcurl(certs.dir, "cli", address, [...proto, "-d", '{"service":"query","host":"127.0.0.1","port":7001}', "umw.controlplane.v1.RegistrationService/Deregister"]);
    assert.equal(deregister.code, 64 + Code.PERMISSION_DENIED, deregister.stderr);
    assert.match(deregister.stderr, /Code: PermissionDenied/);
    const info = /"@value": "([^"]+)"/.exec(deregister.stderr)?.[1];
    assert.ok(info, deregister.stderr);
    const errorInfo = fromBinary(ErrorInfoSchema, Buffer.from(info, "base64"));
    assert.equal(errorInfo.reason, "MESH_METHOD_DENIED");
    assert.deepEqual(errorInfo.metadata, { peer: "cli", method: "umw.controlplane.v1.RegistrationService/Deregister" });
  });

  test("a client expecting another service refuses the control plane's certificate", async () => {
    const client = createClient(RegistrationService, address, clientCredentials(certs.identity("query"), "command"));
    const refused = outcome((async () => {
      for await (const _ of client.register({ service: "query", host: "127.0.0.1", port: 7001 }, { deadline: deadline() })) return;
    })());
    assert.equal(await refused, "UNAVAILABLE UNAVAILABLE");
    client.close();
  });
});
