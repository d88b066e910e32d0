import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { credentials as grpcCredentials, ServerCredentials } from "@grpc/grpc-js";
import { CommandService } from "../../gen/umw/v1/command_pb.js";
import { createClient, type MeshClient } from "../../runtime/client.js";
import { Code, RpcError } from "../../runtime/errors.js";
import { rootLogger } from "../../runtime/logger.js";
import { principalHeaders, type Principal } from "../../runtime/principal.js";
import { MeshServer } from "../../runtime/server.js";
import { connectPostgres, type Database } from "../../runtime/sql.js";
import { clientCredentials, serverCredentials } from "../../runtime/tls.js";
import { topicNames } from "../../runtime/topics.js";
import { createCommandService, type CommandServiceImpl } from "../../services/command/command-service.js";
import { AuthzPolicy, serverAuthorization } from "../../services/policy/index.js";
import { testCerts, type TestCerts } from "../support/certs.js";
import { freshDatabase, type TestDatabase } from "../relay/fixture.js";
import { RESOURCES } from "../command/resources.js";

const log = rootLogger("silent");
type Client = MeshClient<typeof CommandService>;

const user = (subject: string, tenant: string | undefined, scopes: string[], roles: string[] = []): Principal => ({
  kind: "user",
  subject,
  tenant,
  scopes,
  roles,
  expiresAt: Date.now() + 3_600_000,
});
const alice = user("alice", "acme", ["entities:read", "entities:write", "commands:read"]);
const reader = user("rita", "acme", ["entities:read"]);
const admin = user("root", "acme", [], ["admin"]);

function rejects(code: Code, reason: string) {
  return (error: unknown) => {
    assert.ok(error instanceof RpcError, `expected an RpcError, got ${error}`);
    assert.equal(Code[error.code], Code[code], `${error.reason}: ${error.message}`);
    assert.equal(error.reason, reason, error.message);
    return true;
  };
}

/**
 * The real CommandService on a real Postgres behind mesh servers: one with the authorization
 * interceptor (the policy compiled by OPA), one without it (what is left is the service's own
 * tenant check). The tests act as the edge: its certificate, and the principal as x-umw-* metadata.
 */
describe("authorization in the mesh servers", () => {
  let database: TestDatabase;
  let db: Database;
  let impl: CommandServiceImpl;
  let certs: TestCerts;
  const servers: MeshServer[] = [];
  const clients: Client[] = [];
  let edge: Client;
  let cli: Client;
  let edgeWithoutPolicy: Client;
  let insecure: Client;

  const create = (client: Client, tenant: string, principal?: Principal) =>
    client.createEntity(
      { tenant, type: "todo", id: `e-${randomUUID()}`, data: { title: "t" } },
      { headers: { "idempotency-key": `k-${randomUUID()}`, ...(principal ? principalHeaders(principal) : {}) } },
    );
  const commandsIn = async (tenant: string) => Number((await db.query<{ n: string }>("SELECT count(*) AS n FROM umw_commands WHERE tenant = $1", [tenant])).rows[0]!.n);

  before(async () => {
    database = await freshDatabase();
    db = await connectPostgres({ url: database.url, role: "primary", log, max: 5 });
    impl = createCommandService({ db, resources: RESOURCES, topics: { commands: topicNames({ topicPrefix: "test." }).commands }, log, idempotencySweepMs: 0, listen: false });
    certs = testCerts(["command", "cli", "edge"]);
    const policy = await AuthzPolicy.load();
    const serve = async (credentials: ServerCredentials, withPolicy: boolean) => {
      const server = new MeshServer({ name: "command", host: "127.0.0.1", port: 0, credentials, log, interceptors: withPolicy ? [serverAuthorization(policy, new Set(["edge"]))] : [] });
      server.addService(CommandService, impl.handlers);
      servers.push(server);
      return `127.0.0.1:${await server.start()}`;
    };
    const secured = await serve(serverCredentials(certs.identity("command")), true);
    const client = (address: string, credentials = clientCredentials(certs.identity("edge"))) => {
      const made = createClient(CommandService, address, credentials);
      clients.push(made);
      return made;
    };
    edge = client(secured);
    cli = client(secured, clientCredentials(certs.identity("cli")));
    edgeWithoutPolicy = client(await serve(serverCredentials(certs.identity("command")), false));
    insecure = client(await serve(ServerCredentials.createInsecure(), true), grpcCredentials.createInsecure());
  });

  after(async () => {
    for (const client of clients) client.close();
    for (const server of servers) await server.stop();
    await impl?.close();
    await db?.close();
    certs?.remove();
    await database?.drop();
  });

  test("a user writes in its own tenant with entities:write, and reads the command with commands:read", async () => {
    const { receipt } = await create(edge, "acme", alice);
    assert.ok(receipt?.commandId);
    const { command } = await edge.getCommand({ tenant: "acme", commandId: receipt.commandId }, { headers: principalHeaders(alice) });
    assert.equal(command?.commandId, receipt.commandId);
  });

  test("another tenant is PERMISSION_DENIED CROSS_TENANT_ACCESS, and nothing is written", async () => {
    const before = await commandsIn("globex");
    await assert.rejects(create(edge, "globex", alice), rejects(Code.PERMISSION_DENIED, "CROSS_TENANT_ACCESS"));
    await assert.rejects(edge.getCommand({ tenant: "globex", commandId: randomUUID() }, { headers: principalHeaders(alice) }), rejects(Code.PERMISSION_DENIED, "CROSS_TENANT_ACCESS"));
    assert.equal(await commandsIn("globex"), before);
  });

  test("a scope the token lacks is PERMISSION_DENIED MISSING_SCOPE; the admin role needs none in its tenant", async () => {
    await assert.rejects(create(edge, "acme", reader), rejects(Code.PERMISSION_DENIED, "MISSING_SCOPE"));
    await assert.rejects(create(edge, "acme", user("nobody", "acme", [])), rejects(Code.PERMISSION_DENIED, "MISSING_SCOPE"));
    assert.ok((await create(edge, "acme", admin)).receipt?.commandId);
    await assert.rejects(create(edge, "globex", admin), rejects(Code.PERMISSION_DENIED, "CROSS_TENANT_ACCESS"));
  });

  test("a token without a tenant is PERMISSION_DENIED TENANT_REQUIRED", async () => {
    await assert.rejects(create(edge, "acme", user("drifter", undefined, ["entities:write"])), rejects(Code.PERMISSION_DENIED, "TENANT_REQUIRED"));
  });

  test("a peer that is not a trusted edge cannot assert a user: it is a service principal, left to the mesh table", async () => {
    const { receipt } = await create(cli, "globex", user("mallory", "acme", []));
    const row = await db.query<{ principal: string }>("SELECT principal FROM umw_commands WHERE id = $1", [receipt!.commandId]);
    assert.equal(row.rows[0]?.principal, "cli");
  });

  test("no principal at all (an insecure port, no assertion) is UNAUTHENTICATED PRINCIPAL_REQUIRED", async () => {
    await assert.rejects(create(insecure, "acme"), rejects(Code.UNAUTHENTICATED, "PRINCIPAL_REQUIRED"));
    // The same port with a user assertion (in-process callers are trusted) goes through the policy.
    assert.ok((await create(insecure, "acme", alice)).receipt?.commandId);
  });

  test("without the interceptor the service itself still refuses another tenant (defence in depth)", async () => {
    const before = await commandsIn("globex");
    await assert.rejects(create(edgeWithoutPolicy, "globex", alice), rejects(Code.PERMISSION_DENIED, "CROSS_TENANT_ACCESS"));
    await assert.rejects(edgeWithoutPolicy.getCommand({ tenant: "globex", commandId: randomUUID() }, { headers: principalHeaders(alice) }), rejects(Code.PERMISSION_DENIED, "CROSS_TENANT_ACCESS"));
    assert.equal(await commandsIn("globex"), before);
    // What the policy alone refuses (a missing scope) the service does not know of.
    assert.ok((await create(edgeWithoutPolicy, "acme", reader)).receipt?.commandId);
  });
});
