import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { CommandState } from "../../gen/umw/v1/command_pb.js";
import { ChangeKind } from "../../gen/umw/v1/envelope_pb.js";
import type { SubscribeResponse } from "../../gen/umw/v1/realtime_pb.js";
import { Code, errorInfoOf, RpcError } from "../../runtime/errors.js";
import { COMMAND_CHANNEL } from "../../runtime/outbox.js";
import { decodePosition, type RunningRealtimeHub } from "../../services/realtime/index.js";
import { changeVersions, Harness, Reader, unique } from "./harness.js";

const TYPE = "doc";
const entityTopic = (tenant: string, id: string, type = TYPE) => ({ target: { case: "entity" as const, value: { tenant, type, id } } });
const typeTopic = (type = TYPE) => ({ target: { case: "type" as const, value: type } });
const blob = (size: number) => ({ blob: "x".repeat(size) });

function rpcError(error: unknown): RpcError {
  assert.ok(error instanceof RpcError, `expected an RpcError, got ${String(error)}`);
  return error;
}

/** The snapshot version of `id` (0 when absent), then every change version, in stream order. */
function versionsSeen(messages: readonly SubscribeResponse[], id: string): number[] {
  const seen: number[] = [];
  for (const m of messages) {
    if (m.message.case === "snapshot") seen.push(Number(m.message.value.entities.find((e) => e.id === id)?.version ?? 0));
    if (m.message.case === "change" && m.message.value.entity?.id === id) seen.push(Number(m.message.value.entity.version));
  }
  return seen;
}

describe("RealtimeService hub against Kafka and Postgres", { timeout: 120_000 }, () => {
  const h = new Harness();
  let hubA: RunningRealtimeHub;
  let hubB: RunningRealtimeHub;
  /** Tiny history, tight slow-consumer bounds, tight stream limits. */
  let hubC: RunningRealtimeHub;
  /** Short stuck bound, small type snapshots. */
  let hubD: RunningRealtimeHub;

  before(async () => {
    await h.setUp();
    [hubA, hubB, hubC, hubD] = await Promise.all([
      h.startHub({ heartbeatMs: 400, sweepIntervalMs: 100 }),
      h.startHub({}),
      h.startHub({ historyPerPartition: 5, slowAfterMs: 50, maxPendingEntities: 6, maxStreamsPerConnection: 2, maxStreamsPerTenant: 3, sweepIntervalMs: 100 }),
      h.startHub({ maxStuckMs: 700, sweepIntervalMs: 100, snapshotLimit: 3 }),
    ]);
  });

  after(async () => {
    await h.tearDown();
  });

  test("snapshot then live: 200 updates racing the subscribes, every reader sees a gap-free, duplicate-free sequence", async () => {
    const tenant = unique("race");
    await h.write(tenant, TYPE, "hot", { n: 0 });
    const client = h.client(hubA);
    const last = 201;
    const writer = (async () => {
      for (let n = 1; n <= 200; n++) await h.write(tenant, TYPE, "hot", { n });
    })();
    const readers: Reader[] = [];
    for (let i = 0; i < 5; i++) {
      await sleep(i === 0 ? 0 : 120);
      const topics = i % 2 === 0 ? [entityTopic(tenant, "hot")] : [typeTopic()];
      const reader = new Reader(client, { tenant, topics, snapshot: true });
      readers.push(reader);
    }
    await Promise.all(readers.map((reader) => reader.until((m) => versionsSeen([m], "hot").includes(last), 20_000)));
    await writer;
    const joinedDuringWrites = readers.filter((reader) => versionsSeen(reader.messages, "hot")[0]! < last).length;
    assert.ok(joinedDuringWrites >= 3, `only ${joinedDuringWrites} readers joined while the writes ran`);
    for (const reader of readers) {
      const seen = versionsSeen(reader.messages, "hot");
      assert.equal(reader.messages[0]?.message.case, "snapshot");
      for (let i = 1; i < seen.length; i++) assert.equal(seen[i], seen[i - 1]! + 1, `gap or duplicate: ${seen.join(",")}`);
      assert.equal(seen.at(-1), last);
      assert.ok(reader.messages.every((m) => m.position.length > 0), "every message carries a position");
      assert.ok(reader.messages.every((m) => m.message.case !== "change" || !m.message.value.conflated));
      reader.cancel();
    }
  });

  test("resume after a dropped connection replays exactly the missed events", async () => {
    const tenant = unique("resume");
    const client = h.client(hubA);
    // The (empty) snapshot arrives once the stream is attached to the live feed: only then write.
    const first = new Reader(client, { tenant, topics: [typeTopic()], snapshot: true });
    assert.equal((await first.next())?.message.case, "snapshot");
    for (let n = 1; n <= 3; n++) await h.write(tenant, TYPE, "r1", { n });
    await first.until(() => changeVersions(first.messages).length === 3);
    const position = first.messages.at(-1)!.position;
    first.cancel();

    for (let n = 4; n <= 7; n++) await h.write(tenant, TYPE, "r1", { n });
    await h.write(tenant, TYPE, "r2", { n: 1 });
    await h.settle([hubA]);

    const resumed = new Reader(client, { tenant, topics: [typeTopic()], snapshot: true, resumeToken: position });
    await resumed.until(() => changeVersions(resumed.messages).length === 5);
    await h.write(tenant, TYPE, "r1", { n: 8 });
    await resumed.until((m) => m.message.case === "change" && m.message.value.entity?.version === 8n);
    assert.ok(resumed.messages.every((m) => m.message.case === "change" || m.message.case === "heartbeat"), "no reset, no snapshot");
    assert.deepEqual(changeVersions(resumed.messages, "r1"), [4, 5, 6, 7, 8]);
    assert.deepEqual(changeVersions(resumed.messages, "r2"), [1]);
    resumed.cancel();
  });

  test("a resume outside the history gets an explicit reset and a fresh snapshot, never a silent gap", async () => {
    const tenant = unique("reset");
    const client = h.client(hubC);
    const headers = { "x-umw-connection-id": "reset" };
    const first = new Reader(client, { tenant, topics: [entityTopic(tenant, "x")], snapshot: true }, { headers });
    await first.next();
    await h.write(tenant, TYPE, "x", { n: 1 });
    await first.until((m) => m.message.case === "change");
    const position = first.messages.at(-1)!.position;
    first.cancel();

    for (let n = 2; n <= 12; n++) await h.write(tenant, TYPE, "x", { n }); // 11 events > a ring of 5 on that partition
    await h.settle([hubC]);
    const resumed = new Reader(client, { tenant, topics: [entityTopic(tenant, "x")], resumeToken: position }, { headers });
    const reset = await resumed.next();
    assert.equal(reset?.message.case, "reset");
    assert.equal(errorInfoOf(reset.message.value.reason!)?.reason, "HISTORY_EXCEEDED");
    const snapshot = await resumed.next();
    assert.equal(snapshot?.message.case, "snapshot");
    assert.deepEqual(
      snapshot.message.value.entities.map((e) => [e.id, e.version]),
      [["x", 12n]],
    );
    await h.write(tenant, TYPE, "x", { n: 13 });
    await resumed.until((m) => m.message.case === "change");
    assert.deepEqual(changeVersions(resumed.messages), [13]);
    resumed.cancel();

    // A position from another hub instance (another epoch) is not trusted either.
    const onA = new Reader(h.client(hubA), { tenant, topics: [entityTopic(tenant, "x")], snapshot: true });
    const fromA = (await onA.next())!.position;
    onA.cancel();
    const onB = new Reader(h.client(hubB), { tenant, topics: [entityTopic(tenant, "x")], resumeToken: fromA });
    assert.equal((await onB.next())?.message.case, "reset");
    assert.equal((await onB.next())?.message.case, "snapshot");
    onB.cancel();
  });

  test("a reader that stops reading gets conflated changes, ending at the latest state", async () => {
    const tenant = unique("conflate");
    const client = h.client(hubC);
    const reader = new Reader(client, { tenant, topics: [typeTopic("blob")], snapshot: true }, { headers: { "x-umw-connection-id": "conflate" } });
    assert.equal((await reader.next())?.message.case, "snapshot");
    // The reader now takes nothing: rounds of 8 KB updates of 4 entities fill every buffer in between,
    // until the hub has to conflate (how much the transport absorbs first depends on the platform).
    const ids = ["a", "b", "c", "d"];
    const conflatedBefore = hubC.stats().conflated;
    let rounds = 0;
    while (rounds < 400 && (rounds < 20 || hubC.stats().conflated < conflatedBefore + 8)) {
      rounds++;
      for (const id of ids) await h.write(tenant, "blob", id, { n: rounds, ...blob(8_192) });
      if (rounds % 10 === 0) await h.settle([hubC]);
    }
    await h.settle([hubC]);
    const latest = new Map<string, number>();
    while (ids.some((id) => latest.get(id) !== rounds)) {
      const message = await reader.next();
      assert.ok(message, `stream ended: ${String(reader.error)}`);
      if (message.message.case === "change") {
        const { id, version } = message.message.value.entity!;
        assert.ok(Number(version) > (latest.get(id) ?? 0), "versions only grow");
        latest.set(id, Number(version));
      }
    }
    const changes = reader.messages.filter((m) => m.message.case === "change");
    const conflated = changes.filter((m) => m.message.case === "change" && m.message.value.conflated);
    assert.ok(conflated.length > 0, "some changes are conflated");
    assert.ok(changes.length < rounds * ids.length, `fewer messages (${changes.length}) than events (${rounds * ids.length})`);
    reader.cancel();
  });

  test("a reader past the pending bound is ended with RESOURCE_EXHAUSTED / SLOW_CONSUMER and a resume position", async () => {
    const tenant = unique("slow");
    const client = h.client(hubC);
    const reader = new Reader(client, { tenant, topics: [typeTopic("blob")], snapshot: true }, { headers: { "x-umw-connection-id": "slow" } });
    assert.equal((await reader.next())?.message.case, "snapshot");
    // Distinct entities, until more than 6 are pending behind the full transport buffers.
    const slowBefore = hubC.stats().slowConsumers;
    for (let i = 0; i < 1_000 && hubC.stats().slowConsumers === slowBefore; i++) {
      await h.write(tenant, "blob", `e${i}`, blob(16_384));
      if (i % 10 === 9) await h.settle([hubC]);
    }
    const error = rpcError(await reader.end());
    assert.equal(error.code, Code.RESOURCE_EXHAUSTED);
    assert.equal(error.reason, "SLOW_CONSUMER");
    assert.equal(decodePosition(error.metadata.position!).epoch, hubC.stats().epoch);
    assert.ok(hubC.stats().slowConsumers >= 1);
  });

  test("a reader stuck past the time bound is ended with SLOW_CONSUMER; resuming from its position loses nothing", async () => {
    const tenant = unique("stuck");
    const client = h.client(hubD);
    const reader = new Reader(client, { tenant, topics: [typeTopic("blob")], snapshot: true });
    assert.equal((await reader.next())?.message.case, "snapshot");
    const written = new Map<string, number>();
    const slowBefore = hubD.stats().slowConsumers;
    for (let i = 0; i < 1_000 && hubD.stats().slowConsumers === slowBefore; i++) {
      const entity = await h.write(tenant, "blob", `e${i % 50}`, blob(16_384));
      written.set(entity.id, Number(entity.version));
      if (i % 10 === 9) await sleep(50);
    }
    const error = rpcError(await reader.end());
    assert.equal(error.reason, "SLOW_CONSUMER");
    assert.match(error.message, /nothing taken/);
    // Everything before the error plus the resumed stream covers every entity's latest state.
    const resumed = new Reader(client, { tenant, topics: [typeTopic("blob")], resumeToken: error.metadata.position! });
    const latest = new Map<string, number>();
    const note = (messages: readonly SubscribeResponse[]) => {
      for (const m of messages) if (m.message.case === "change") latest.set(m.message.value.entity!.id, Number(m.message.value.entity!.version));
    };
    note(reader.messages);
    while ([...written].some(([id, version]) => latest.get(id) !== version)) {
      const message = await resumed.next();
      assert.ok(message, `resumed stream ended: ${String(resumed.error)}`);
      assert.notEqual(message.message.case, "reset");
      note([message]);
    }
    resumed.cancel();
  });

  test("a type snapshot is bounded and says when it was cut", async () => {
    const tenant = unique("bounded");
    for (const id of ["a", "b", "c", "d", "e"]) await h.write(tenant, TYPE, id, { id });
    let truncated: string | undefined;
    const reader = new Reader(h.client(hubD), { tenant, topics: [typeTopic()], snapshot: true }, { onHeaders: (headers) => (truncated = String(headers.get("x-umw-snapshot-truncated")[0])) });
    const snapshot = await reader.next();
    assert.ok(snapshot?.message.case === "snapshot");
    assert.deepEqual(snapshot.message.value.entities.map((e) => e.id), ["a", "b", "c"]);
    assert.equal(truncated, "true");
    assert.equal(snapshot.message.value.truncated, true);
    // Changes of entities beyond the bound still arrive.
    await h.write(tenant, TYPE, "e", { id: "e", n: 2 }, ChangeKind.DELETED);
    const change = await reader.until((m) => m.message.case === "change");
    assert.ok(change.message.case === "change");
    assert.equal(change.message.value.kind, ChangeKind.DELETED);
    assert.equal(change.message.value.entity?.version, 2n);
    reader.cancel();
  });

  test("a subscription to another tenant is denied; the caller's own tenant is served", async () => {
    const client = h.client(hubA);
    const headers = { "x-umw-principal": "u", "x-umw-tenant": "acme" };
    const denied = new Reader(client, { tenant: "globex", topics: [typeTopic()] }, { headers });
    let error = rpcError(await denied.end());
    assert.equal(error.code, Code.PERMISSION_DENIED);
    assert.equal(error.reason, "CROSS_TENANT_SUBSCRIPTION");

    const sneaky = new Reader(client, { tenant: "acme", topics: [entityTopic("globex", "secret")] }, { headers });
    error = rpcError(await sneaky.end());
    assert.equal(error.reason, "CROSS_TENANT_SUBSCRIPTION");

    const own = new Reader(client, { tenant: "acme", topics: [typeTopic()], snapshot: true }, { headers });
    assert.equal((await own.next())?.message.case, "snapshot");
    own.cancel();
  });

  test("the stream ends with UNAUTHENTICATED / TOKEN_EXPIRED when the caller's token expires", async () => {
    const tenant = unique("expiry");
    const client = h.client(hubA);
    const expiresAt = Date.now() + 1_500;
    const reader = new Reader(client, { tenant, topics: [typeTopic()], snapshot: true }, { headers: { "x-umw-principal": "u", "x-umw-tenant": tenant, "x-umw-token-expires-at": String(expiresAt) } });
    assert.equal((await reader.next())?.message.case, "snapshot");
    await h.write(tenant, TYPE, "e", { n: 1 });
    await reader.until((m) => m.message.case === "change");
    const error = rpcError(await reader.end(5_000));
    const endedAt = Date.now();
    assert.equal(error.code, Code.UNAUTHENTICATED);
    assert.equal(error.reason, "TOKEN_EXPIRED");
    assert.ok(endedAt >= expiresAt - 50 && endedAt < expiresAt + 1_000, `ended ${endedAt - expiresAt} ms after expiry`);

    const late = new Reader(client, { tenant, topics: [typeTopic()] }, { headers: { "x-umw-principal": "u", "x-umw-tenant": tenant, "x-umw-token-expires-at": String(Date.now() - 1_000) } });
    assert.equal(rpcError(await late.end()).reason, "TOKEN_EXPIRED");
  });

  test("open streams are limited per connection and per tenant, each refusal with its reason", async () => {
    const tenant = unique("limits");
    const client = h.client(hubC);
    const open = async (connection: string) => {
      const reader = new Reader(client, { tenant, topics: [typeTopic()], snapshot: true }, { headers: { "x-umw-connection-id": connection } });
      const first = await reader.next();
      return { reader, first };
    };
    const a1 = await open("c1");
    const a2 = await open("c1");
    assert.equal(a1.first?.message.case, "snapshot");
    assert.equal(a2.first?.message.case, "snapshot");
    const a3 = await open("c1");
    assert.equal(a3.first, undefined);
    assert.equal(rpcError(a3.reader.error).reason, "TOO_MANY_STREAMS_PER_CONNECTION");
    assert.equal(rpcError(a3.reader.error).code, Code.RESOURCE_EXHAUSTED);
    const b1 = await open("c2");
    assert.equal(b1.first?.message.case, "snapshot");
    const b2 = await open("c3");
    assert.equal(rpcError(b2.reader.error).reason, "TOO_MANY_STREAMS_PER_TENANT");
    a1.reader.cancel();
    // The slot frees once the server sees the cancel.
    let again: Awaited<ReturnType<typeof open>> | undefined;
    for (let attempt = 0; attempt < 50 && !again?.first; attempt++) {
      await sleep(50);
      again = await open("c1");
    }
    assert.equal(again?.first?.message.case, "snapshot");
    for (const reader of [a2.reader, b1.reader, again!.reader]) reader.cancel();
  });

  test("two hubs: subscribers on both receive every event", async () => {
    const tenant = unique("scale");
    const readers = [hubA, hubA, hubB, hubB].map((hub, i) => new Reader(h.client(hub), { tenant, topics: i % 2 ? [typeTopic()] : [typeTopic(), entityTopic(tenant, "n0")], snapshot: true }));
    for (const reader of readers) assert.equal((await reader.next())?.message.case, "snapshot");
    const expected: string[] = [];
    for (let n = 1; n <= 3; n++) {
      for (let i = 0; i < 10; i++) {
        await h.write(tenant, TYPE, `n${i}`, { n });
        expected.push(`n${i}@${n}`);
      }
    }
    for (const reader of readers) {
      await reader.until(() => reader.messages.filter((m) => m.message.case === "change").length >= expected.length);
      const got = reader.messages.flatMap((m) => (m.message.case === "change" ? [`${m.message.value.entity!.id}@${m.message.value.entity!.version}`] : []));
      assert.deepEqual([...got].sort(), [...expected].sort());
      reader.cancel();
    }
    await h.settle([hubA, hubB]);
    assert.deepEqual(hubA.stats().heads, hubB.stats().heads);
  });

  test("an idle stream gets heartbeats carrying a position", async () => {
    const tenant = unique("idle");
    const reader = new Reader(h.client(hubA), { tenant, topics: [typeTopic("quiet")] });
    const started = Date.now();
    const message = await reader.next(3_000);
    assert.equal(message?.message.case, "heartbeat");
    assert.ok(Date.now() - started < 1_500);
    assert.equal(decodePosition(message.position).epoch, hubA.stats().epoch);
    reader.cancel();
  });

  test("own commands: each principal hears of its own commands only", async () => {
    const tenant = unique("cmds");
    const client = h.client(hubA);
    const insert = async (principal: string, state: string): Promise<string> => {
      const id: string = randomUUID();
      await h.db.query(
        `INSERT INTO umw_commands (id, tenant, principal, type, entity_id, action, state, version) VALUES ($1, $2, $3, 'doc', 'd1', 'update', $4, $5)`,
        [id, tenant, principal, state, state === "applied" ? 3 : null],
      );
      await h.db.query(`SELECT pg_notify('${COMMAND_CHANNEL}', $1)`, [id]);
      return id;
    };
    const earlier = await insert("alice", "applied");
    const headers = (principal: string) => ({ "x-umw-tenant": tenant, "x-umw-principal": principal });
    const alice = new Reader(client, { tenant, topics: [{ target: { case: "ownCommands", value: true } }], snapshot: true }, { headers: headers("alice") });
    const bob = new Reader(client, { tenant, topics: [{ target: { case: "ownCommands", value: true } }], snapshot: true }, { headers: headers("bob") });
    assert.equal((await alice.next())?.message.case, "snapshot");
    const catchUp = await alice.next();
    assert.equal(catchUp?.message.case === "command" && catchUp.message.value.commandId, earlier);
    // Bob's (empty) snapshot arrives once his stream is attached: only then do the commands change.
    assert.equal((await bob.next())?.message.case, "snapshot");
    const aliceCommand = await insert("alice", "accepted");
    const bobCommand = await insert("bob", "rejected");
    const forAlice = await alice.until((m) => m.message.case === "command");
    assert.ok(forAlice.message.case === "command");
    assert.equal(forAlice.message.value.commandId, aliceCommand);
    assert.equal(forAlice.message.value.state, CommandState.ACCEPTED);
    const forBob = await bob.find((m) => m.message.case === "command");
    assert.ok(forBob.message.case === "command");
    assert.equal(forBob.message.value.commandId, bobCommand);
    assert.equal(forBob.message.value.state, CommandState.REJECTED);
    alice.cancel();
    bob.cancel();

    // A peer that is not trusted to assert a principal follows its own (mTLS) identity's commands only.
    const impostor = new Reader(h.client(hubA, "cli"), { tenant, topics: [{ target: { case: "ownCommands", value: true } }], snapshot: true }, { headers: headers("alice") });
    assert.equal((await impostor.next())?.message.case, "snapshot");
    await insert("cli", "accepted");
    const forCli = await impostor.until((m) => m.message.case === "command");
    assert.ok(forCli.message.case === "command");
    assert.notEqual(forCli.message.value.commandId, earlier);
    assert.ok(impostor.messages.every((m) => m.message.case !== "command" || ![earlier, aliceCommand].includes(m.message.value.commandId)));
    impostor.cancel();
  });
});
