// Conditional writes end to end on the real Postgres and Kafka (the tag logic alone: services/edge/entity-tags.test.ts).
//
//   scripts/infra.sh up && node --import tsx --test test/edge/conditional.test.ts
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Code, RpcError } from "../../runtime/errors.js";
import { RESOURCES } from "../command/resources.js";
import { startWriteStack, type WriteStack } from "../command/write-stack.js";
import { create } from "@bufbuild/protobuf";
import { GetEntityResponseSchema, QueryService, BatchGetEntitiesResponseSchema } from "../../gen/umw/v1/query_pb.js";
import { EntitySchema } from "../../gen/umw/v1/entity_pb.js";
import { entityTag, noneMatch, versionLocator } from "../../services/edge/entity-tags.js";
import { httpStatusOf } from "../../services/edge/http-status.js";

const versioned = new Set(["umw.v1.Entity"]);

describe("conditional writes through the edge, on Postgres and Kafka", { timeout: 120_000 }, () => {
  const TENANT = "acme";
  let stack: WriteStack;

  before(async () => {
    stack = await startWriteStack({ resources: RESOURCES });
  });
  after(async () => {
    await stack?.stop();
  });

  const url = (id?: string) => `${stack.edge.url}/v1/tenants/${TENANT}/types/todo/entities${id === undefined ? "" : `/${id}`}`;

  async function write(method: string, target: string, body: unknown, headers: Record<string, string> = {}, key = randomUUID()) {
    const response = await fetch(target, {
      method,
      headers: { "content-type": "application/json", "idempotency-key": `"${key}"`, ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = (await response.json()) as { receipt?: { commandId: string }; code?: number; message?: string; details?: { reason?: string; metadata?: Record<string, string> }[] };
    return { status: response.status, headers: response.headers, json, reason: json.details?.[0]?.reason };
  }

  async function applied(result: Awaited<ReturnType<typeof write>>): Promise<string> {
    assert.equal(result.status, 202, JSON.stringify(result.json));
    const outcome = await stack.outcome(result.json.receipt!.commandId);
    assert.equal(outcome.state, "applied", `${outcome.reason}: ${outcome.message}`);
    return outcome.version!;
  }

  async function created(): Promise<string> {
    const id = `c-${randomUUID().slice(0, 8)}`;
    assert.equal(await applied(await write("POST", `${url()}?id=${id}`, { title: "v1" })), "1");
    return id;
  }

  test("If-Match that does not match: 412 at once, nothing written; a matching one (weak or strong) applies", async () => {
    const id = await created();
    const stale = await write("PUT", url(id), { title: "lost" }, { "if-match": '"99"' });
    assert.equal(stale.status, 412, JSON.stringify(stale.json));
    assert.equal(stale.json.code, 9, "FAILED_PRECONDITION");
    assert.equal(stale.reason, "PRECONDITION_FAILED");
    assert.equal(stale.json.details![0]!.metadata!.current_version, "1");
    const { rows } = await stack.db.query<{ n: number }>("SELECT count(*)::int AS n FROM umw_commands WHERE entity_id = $1", [id]);
    assert.equal(rows[0]!.n, 1, "the refused write left no command behind");

    assert.equal(await applied(await write("PUT", url(id), { title: "v2" }, { "if-match": 'W/"1"' })), "2");
    assert.equal(await applied(await write("PATCH", url(id), { done: true }, { "if-match": '"2"' })), "3");
    assert.equal(await applied(await write("PATCH", url(id), { done: false }, { "if-match": 'W/"7", W/"3"' })), "4", "a list matches any of its tags");
    assert.equal((await write("DELETE", url(id), undefined, { "if-match": 'W/"3"' })).status, 412);
    assert.equal(await applied(await write("DELETE", url(id), undefined, { "if-match": 'W/"4"' })), "5");
  });

  test("If-Match: * needs the entity to exist; If-None-Match: * on create needs it not to", async () => {
    const missing = `m-${randomUUID().slice(0, 8)}`;
    const put = await write("PUT", url(missing), { title: "x" }, { "if-match": "*" });
    assert.equal(put.status, 412);
    assert.equal(put.reason, "PRECONDITION_FAILED");

    const id = await created();
    assert.equal(await applied(await write("PUT", url(id), { title: "any" }, { "if-match": "*" })), "2");
    const again = await write("POST", `${url()}?id=${id}`, { title: "dup" }, { "if-none-match": "*" });
    assert.equal(again.status, 412, JSON.stringify(again.json));
    assert.equal(again.reason, "PRECONDITION_FAILED");
    const fresh = `n-${randomUUID().slice(0, 8)}`;
    assert.equal(await applied(await write("POST", `${url()}?id=${fresh}`, { title: "new" }, { "if-none-match": "*" })), "1");
  });

  test("a malformed If-Match is a 400 with a reason", async () => {
    const id = await created();
    const bad = await write("PUT", url(id), { title: "x" }, { "if-match": "3" });
    assert.equal(bad.status, 400);
    assert.equal(bad.reason, "INVALID_PRECONDITION");
  });

  test("a retry of an applied conditional write replays its receipt instead of failing the precondition", async () => {
    const id = await created();
    const key = randomUUID();
    const first = await write("PUT", url(id), { title: "v2" }, { "if-match": 'W/"1"' }, key);
    assert.equal(await applied(first), "2");
    const retry = await write("PUT", url(id), { title: "v2" }, { "if-match": 'W/"1"' }, key);
    assert.equal(retry.status, 202, JSON.stringify(retry.json));
    assert.equal(retry.headers.get("idempotent-replayed"), "true");
    assert.equal(retry.json.receipt!.commandId, first.json.receipt!.commandId);
  });

  test("two writes racing on the same If-Match: one applies, the other ends VERSION_CONFLICT", async () => {
    const id = await created();
    const [a, b] = await Promise.all([write("PUT", url(id), { title: "a" }, { "if-match": 'W/"1"' }), write("PUT", url(id), { title: "b" }, { "if-match": 'W/"1"' })]);
    const results = [a, b];
    const accepted = results.filter((result) => result.status === 202);
    // The second is accepted while the first is pending (it may yet be rejected), or refused at once.
    for (const result of results) assert.ok(result.status === 202 || result.status === 412, JSON.stringify(result.json));
    const outcomes = await Promise.all(accepted.map((result) => stack.outcome(result.json.receipt!.commandId)));
    assert.equal(outcomes.filter((outcome) => outcome.state === "applied").length, 1, JSON.stringify(outcomes));
    for (const outcome of outcomes.filter((o) => o.state !== "applied")) {
      assert.equal(outcome.state, "rejected");
      assert.equal(outcome.reason, "VERSION_CONFLICT");
    }
  });

  test("gRPC: expected_version is the same precondition (FAILED_PRECONDITION at once), and if-match metadata too", async () => {
    const id = await created();
    const headers = () => ({ headers: { "idempotency-key": randomUUID() } });
    await assert.rejects(stack.grpc.updateEntity({ tenant: TENANT, type: "todo", id, data: { title: "x" }, expectedVersion: 5n }, headers()), (error: unknown) => {
      assert.ok(error instanceof RpcError);
      assert.equal(error.code, Code.FAILED_PRECONDITION);
      assert.equal(error.reason, "PRECONDITION_FAILED");
      return true;
    });
    await assert.rejects(
      stack.grpc.deleteEntity({ tenant: TENANT, type: "todo", id }, { headers: { "idempotency-key": randomUUID(), "if-match": 'W/"9"' } }),
      (error: unknown) => error instanceof RpcError && error.reason === "PRECONDITION_FAILED",
    );
    const ok = await stack.grpc.updateEntity({ tenant: TENANT, type: "todo", id, data: { title: "v2" }, expectedVersion: 1n }, headers());
    const outcome = await stack.outcome(ok.receipt!.commandId);
    assert.deepEqual([outcome.state, outcome.version], ["applied", "2"]);
  });

  test("the same Idempotency-Key with another payload: 422 over REST, FAILED_PRECONDITION with the reason over Connect", async () => {
    const key = randomUUID();
    const id = `k-${randomUUID().slice(0, 8)}`;
    assert.equal((await write("POST", `${url()}?id=${id}`, { title: "one" }, {}, key)).status, 202);
    const reused = await write("POST", `${url()}?id=${id}`, { title: "two" }, {}, key);
    assert.equal(reused.status, 422, JSON.stringify(reused.json));
    assert.equal(reused.json.code, 9);
    assert.equal(reused.reason, "IDEMPOTENCY_KEY_REUSED");
    // A conditional request keeps 422: the key, not the entity, is what failed.
    assert.equal((await write("POST", `${url()}?id=${id}`, { title: "three" }, { "if-none-match": "*" }, key)).status, 422);

    const connect = await fetch(`${stack.edge.url}/umw.v1.CommandService/CreateEntity`, {
      method: "POST",
      headers: { "content-type": "application/json", "idempotency-key": `"${key}"` },
      body: JSON.stringify({ tenant: TENANT, type: "todo", id, data: { title: "four" } }),
    });
    const error = (await connect.json()) as { code: string; details?: { type: string; debug?: { reason?: string } }[] };
    assert.equal(error.code, "failed_precondition");
    const info = error.details?.find((detail) => detail.type === "google.rpc.ErrorInfo");
    assert.ok(info, JSON.stringify(error));
  });
});
