// Idempotency keys belong to the token's subject: through the Node edge with bearer tokens (a dev
// issuer from test/support), on the real CommandService, Postgres and Kafka. Two users sending the
// same Idempotency-Key get two commands, each user's retry replays their own answer, and a forged
// x-umw-principal header changes nothing.
//
//   node --import tsx --test test/command/idempotency-subject.test.ts
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { TestIssuer } from "../support/dev-tokens.js";
import { RESOURCES } from "./resources.js";
import { startWriteStack, type WriteStack } from "./write-stack.js";

describe("idempotency keys per token subject, through the edge", { timeout: 120_000 }, () => {
  const TENANT = "acme";
  let issuer: TestIssuer;
  let stack: WriteStack;

  before(async () => {
    issuer = await TestIssuer.create();
    stack = await startWriteStack({ resources: RESOURCES, auth: issuer.auth() });
  });
  after(async () => {
    await stack?.stop();
    issuer?.close();
  });

  const create = async (subject: string, key: string, extra: Record<string, string> = {}) => {
    const response = await fetch(`${stack.edge.url}/v1/tenants/${TENANT}/types/todo/entities`, {
      method: "POST",
      headers: { authorization: `Bearer ${await issuer.token(TENANT, { subject })}`, "content-type": "application/json", "idempotency-key": `"${key}"`, ...extra },
      body: JSON.stringify({ title: "same payload" }),
    });
    const body = (await response.json()) as { receipt?: { commandId: string } };
    return { status: response.status, replayed: response.headers.get("idempotent-replayed"), commandId: body.receipt?.commandId };
  };

  test("the same key from two users makes two commands; each retry replays its own; a forged principal header is ignored", async () => {
    const key = `k-${randomUUID()}`;
    const alice = await create("alice", key);
    const bob = await create("bob", key);
    assert.equal(alice.status, 202);
    assert.equal(bob.status, 202);
    assert.notEqual(bob.commandId, alice.commandId, "bob's write is not a replay of alice's");
    assert.equal(bob.replayed, null);

    const aliceAgain = await create("alice", key);
    assert.equal(aliceAgain.commandId, alice.commandId);
    assert.equal(aliceAgain.replayed, "true");

    const bobPosingAsAlice = await create("bob", key, { "x-umw-principal": "alice", "x-umw-tenant": TENANT });
    assert.equal(bobPosingAsAlice.commandId, bob.commandId, "still bob's own key");

    const { rows } = await stack.db.query<{ principal: string }>("SELECT principal FROM umw_commands WHERE id = ANY($1::uuid[]) ORDER BY principal", [[alice.commandId, bob.commandId]]);
    assert.deepEqual(rows.map((row) => row.principal), ["alice", "bob"]);
  });
});
