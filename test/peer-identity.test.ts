import { test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { EntitySchema } from "../gen/umw/v1/entity_pb.js";
import { QueryService } from "../gen/umw/v1/query_pb.js";
import { createClient } from "../runtime/client.js";
import { RpcError, Code } from "../runtime/errors.js";
import { rootLogger } from "../runtime/logger.js";
import { MeshServer } from "../runtime/server.js";
import { clientCredentials, serverCredentials } from "../runtime/tls.js";
import { testCerts } from "./support/certs.js";

// runtime/tls.ts keeps a peer's mesh name per connection: several identities calling one server,
// interleaved, each call must still see its own caller, and a new connection its own certificate.
test("peer identity: kept per connection, never another connection's", async () => {
  const certs = testCerts(["query", "edge", "command"]);
  const server = new MeshServer({ name: "query", host: "127.0.0.1", port: 0, credentials: serverCredentials(certs.identity("query")), log: rootLogger("silent"), drainTimeoutMs: 1_000 });
  const notUsed = async () => {
    throw RpcError.fromWire(Code.UNIMPLEMENTED, "NOT_USED", "not used");
  };
  server.addService(QueryService, {
    // The caller's mesh name comes back as the entity id.
    getEntity: async (request, ctx) => ({ entity: create(EntitySchema, { tenant: request.tenant, type: request.type, id: ctx.peer ?? "(none)", version: 1n }) }),
    batchGetEntities: notUsed,
    listEntities: notUsed,
  });
  const address = `127.0.0.1:${await server.start()}`;
  const clients = ["edge", "command"].map((name) => ({ name, client: createClient(QueryService, address, clientCredentials(certs.identity(name))) }));
  try {
    for (let round = 0; round < 3; round++) {
      const answers = await Promise.all(clients.map(({ client }) => client.getEntity({ tenant: "t", type: "item", id: "x" })));
      assert.deepEqual(
        answers.map((answer) => answer.entity?.id),
        clients.map(({ name }) => name),
      );
    }
    // A connection closed and opened again (a new TLS session) is asked afresh.
    clients[0]!.client.close();
    const again = createClient(QueryService, address, clientCredentials(certs.identity("command")));
    assert.equal((await again.getEntity({ tenant: "t", type: "item", id: "x" })).entity?.id, "command");
    again.close();
  } finally {
    for (const { client } of clients) client.close();
    await server.stop();
    certs.remove();
  }
});
