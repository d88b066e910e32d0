import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { EntitySchema } from "../../gen/umw/v1/entity_pb.js";
import { ChangeKind } from "../../gen/umw/v1/envelope_pb.js";
import { SubscribeResponseSchema, type SubscribeResponse } from "../../gen/umw/v1/realtime_pb.js";
import { pino } from "pino";
import { RpcError } from "../../runtime/errors.js";
import { changeField, changeResponse, positionField } from "./change-wire.js";
import type { HubEvent } from "./events.js";
import { RealtimeHub } from "./hub.js";
import { PartitionHistory, RecentIds } from "./history.js";
import { ConfigError, loadConfig } from "../../runtime/config.js";
import { DEFAULT_LIMITS, LIMIT_NAMES, limitSetting, realtimeLimits } from "./limits.js";
import { decodePosition, encodePosition } from "./position.js";
import { Stream, type StreamHost, type StreamPlan } from "./stream.js";

function event(partition: number, offset: number, id: string, version: number): HubEvent {
  const entity = create(EntitySchema, { tenant: "t", type: "doc", id, version: BigInt(version) });
  return { partition, offset, id: `${partition}:${offset}`, key: `t/doc/${id}`, typeKey: "t/doc", kind: ChangeKind.UPDATED, version, entity, receivedAt: 0 };
}

describe("position tokens", () => {
  test("round-trip epoch, offsets and time", () => {
    const token = encodePosition("ep", [[0, 12], [2, 7]], 1234);
    assert.match(token, /^[A-Za-z0-9_-]+$/);
    const position = decodePosition(token);
    assert.equal(position.epoch, "ep");
    assert.deepEqual([...position.offsets], [[0, 12], [2, 7]]);
    assert.equal(position.time, 1234);
  });

  test("anything else is INVALID_ARGUMENT / INVALID_RESUME_TOKEN", () => {
    for (const token of ["%%%", Buffer.from("[]").toString("base64url"), Buffer.from('{"e":"x","o":{"0":"a"}}').toString("base64url"), "e30"]) {
      assert.throws(() => decodePosition(token), (error: unknown) => error instanceof RpcError && error.reason === "INVALID_RESUME_TOKEN");
    }
  });
});

describe("partition history", () => {
  test("covers a position only while nothing after it was dropped", () => {
    const history = new PartitionHistory(3);
    for (let offset = 10; offset < 15; offset++) history.push(event(0, offset, "a", offset));
    assert.deepEqual([...history.since(undefined)].map((e) => e.offset), [12, 13, 14]);
    assert.deepEqual([...history.since(12)].map((e) => e.offset), [13, 14]);
    assert.equal(history.covers(11), true); // dropped through 11: everything after 11 is here
    assert.equal(history.covers(10), false);
    assert.equal(history.covers(undefined), false);
    assert.equal(new PartitionHistory(3).covers(undefined), true);
  });

  test("recent ids drop repeats within the window", () => {
    const ids = new RecentIds(2);
    assert.equal(ids.add("a"), true);
    assert.equal(ids.add("a"), false);
    ids.add("b");
    ids.add("c"); // evicts a
    assert.equal(ids.add("a"), true);
  });
});

describe("limits", () => {
  test("UMW_REALTIME_* variables override the defaults through the config; bad values are named", () => {
    assert.equal(limitSetting("heartbeatMs"), "realtimeHeartbeatMs");
    assert.equal(realtimeLimits(loadConfig({ UMW_REALTIME_HEARTBEAT_MS: "500" })).heartbeatMs, 500);
    assert.equal(realtimeLimits(loadConfig({})).snapshotLimit, 1_000);
    assert.equal(DEFAULT_LIMITS.heartbeatMs, 15_000);
    assert.throws(() => loadConfig({ UMW_REALTIME_SNAPSHOT_LIMIT: "lots" }), (error: Error) => error instanceof ConfigError && /UMW_REALTIME_SNAPSHOT_LIMIT="lots"/.test(error.message));
    assert.throws(() => loadConfig({ UMW_REALTIME_MAX_STUCK_MS: "-1" }), /UMW_REALTIME_MAX_STUCK_MS/);
  });

  test("every limit is a setting with a default", () => {
    for (const name of LIMIT_NAMES) assert.equal(typeof DEFAULT_LIMITS[name], "number", name);
  });
});

for (const encoded of [false, true]) describe(`stream queue (${encoded ? "changes pre-encoded by the host" : "changes as message objects"})`, () => {
  const heads = new Map<number, number>();
  const base: StreamHost = {
    limits: { ...DEFAULT_LIMITS, slowAfterMs: 100, maxPendingEntities: 3 },
    get partitionCount() {
      return heads.size;
    },
    positionToken: (lowered, time) => encodePosition("ep", [...heads].map(([p, o]) => [p, lowered?.get(p) ?? o]), time),
    attach: () => undefined,
    detach: () => undefined,
    replay: () => undefined,
    snapshot: async () => ({ entities: [], truncated: false }),
    recentCommands: async () => [],
    noteSlow: () => undefined,
    noteConflated: () => undefined,
  };
  // Added in place (a spread would freeze the partitionCount getter).
  if (encoded) base.encodeChange = (e, conflated, position) => changeResponse(changeField(e, conflated), positionField(position));
  const host = base;
  const plan: StreamPlan = {
    tenant: "t",
    caller: { tenant: "t", tenantFromToken: false, principal: undefined, user: false, expiresAt: undefined, peer: undefined, headers: {} },
    topics: [{ kind: "type", tenant: "t", type: "doc" }],
    entityKeys: [],
    typeKeys: ["t/doc"],
    commandKey: undefined,
    snapshot: false,
    resume: undefined,
    connectionKey: "c",
    expiresAt: undefined,
  };
  /** What the client decodes: a pre-encoded change must be bytes, a message object otherwise. */
  const decoded = (message: SubscribeResponse | Uint8Array | void): SubscribeResponse => {
    assert.equal(message instanceof Uint8Array, encoded);
    return message instanceof Uint8Array ? fromBinary(SubscribeResponseSchema, message) : (message as SubscribeResponse);
  };
  const offsets = (message: SubscribeResponse | Uint8Array | void) => Object.fromEntries(decodePosition(decoded(message).position).offsets);
  const change = (message: SubscribeResponse | Uint8Array | void) => {
    const m = decoded(message).message;
    assert.equal(m.case, "change");
    return { id: m.value.entity!.id, version: Number(m.value.entity!.version), conflated: m.value.conflated };
  };

  test("a slow reader gets the latest state in place of pending ones; positions stop before what is pending", async () => {
    heads.clear();
    const stream = new Stream(host, plan, new AbortController().signal, { setHeader: () => undefined });
    const messages = stream.run() as AsyncGenerator<SubscribeResponse | Uint8Array>;
    const offer = (e: HubEvent, at = performance.now()) => {
      heads.set(e.partition, e.offset);
      stream.offer(e, at);
    };
    const first = messages.next();
    offer(event(0, 10, "a", 1));
    const m1 = (await first).value;
    assert.deepEqual(change(m1), { id: "a", version: 1, conflated: false });
    assert.deepEqual(offsets(m1), { 0: 10 });
    // The runtime has not taken the next message for longer than slowAfterMs: changes conflate.
    const later = performance.now() + 1_000;
    offer(event(0, 11, "a", 2), later);
    offer(event(1, 5, "b", 1), later);
    offer(event(0, 12, "c", 1), later);
    offer(event(0, 13, "a", 3), later);
    const m2 = (await messages.next()).value;
    assert.deepEqual(change(m2), { id: "a", version: 3, conflated: true });
    // b (partition 1, offset 5) and c (partition 0, offset 12) are still pending.
    assert.deepEqual(offsets(m2), { 0: 11, 1: 4 });
    const m3 = (await messages.next()).value;
    assert.deepEqual(change(m3), { id: "b", version: 1, conflated: false });
    assert.deepEqual(offsets(m3), { 0: 11, 1: 5 });
    const m4 = (await messages.next()).value;
    assert.deepEqual(change(m4), { id: "c", version: 1, conflated: false });
    assert.deepEqual(offsets(m4), { 0: 13, 1: 5 });
    await messages.return(undefined);
    stream.close();
  });

  test("a reader that keeps up gets every version, even of one entity", async () => {
    heads.clear();
    const stream = new Stream(host, plan, new AbortController().signal, { setHeader: () => undefined });
    const messages = stream.run() as AsyncGenerator<SubscribeResponse | Uint8Array>;
    const first = messages.next();
    for (let v = 1; v <= 5; v++) {
      heads.set(0, v);
      stream.offer(event(0, v, "a", v), performance.now());
    }
    const versions = [change((await first).value).version];
    for (let i = 0; i < 4; i++) versions.push(change((await messages.next()).value).version);
    assert.deepEqual(versions, [1, 2, 3, 4, 5]);
    await messages.return(undefined);
    stream.close();
  });

  test("more distinct pending entities than the bound end the stream with SLOW_CONSUMER and the position to resume from", async () => {
    heads.clear();
    const stream = new Stream(host, plan, new AbortController().signal, { setHeader: () => undefined });
    const messages = stream.run() as AsyncGenerator<SubscribeResponse | Uint8Array>;
    const first = messages.next();
    heads.set(0, 1);
    stream.offer(event(0, 1, "a", 1), performance.now());
    await first;
    for (let i = 0; i < 4; i++) {
      heads.set(0, 2 + i);
      stream.offer(event(0, 2 + i, `e${i}`, 1), performance.now());
    }
    await assert.rejects(messages.next(), (error: unknown) => {
      assert.ok(error instanceof RpcError);
      assert.equal(error.reason, "SLOW_CONSUMER");
      assert.deepEqual(Object.fromEntries(decodePosition(error.metadata.position!).offsets), { 0: 1 });
      return true;
    });
    stream.close();
  });
});

describe("change wire", () => {
  const message = (e: HubEvent, conflated: boolean, position: string) =>
    create(SubscribeResponseSchema, { message: { case: "change", value: { kind: e.kind, entity: e.entity, conflated } }, position });

  test("the assembled bytes are exactly what protobuf encodes for the same SubscribeResponse", () => {
    const small = event(0, 1, "a", 1);
    const big = { ...event(0, 2, "b", 7), entity: create(EntitySchema, { tenant: "t", type: "doc", id: "b", version: 7n, data: { text: "x".repeat(70_000) } }) };
    const positions = [encodePosition("ep", [[0, 1]]), encodePosition("ep", Array.from({ length: 40 }, (_, p) => [p, 1_000_000 + p] as [number, number]), 1234)];
    assert.ok(positions[1]!.length > 127, "a position long enough for a two-byte length");
    for (const e of [small, big]) {
      for (const conflated of [false, true]) {
        for (const position of positions) {
          const bytes = changeResponse(changeField(e, conflated), positionField(position));
          assert.deepEqual(new Uint8Array(bytes), toBinary(SubscribeResponseSchema, message(e, conflated, position)));
        }
      }
    }
  });

  test("the hub shares one response per event and position, and keeps the conflated variant apart", () => {
    const hub = new RealtimeHub({ bus: {} as never, topic: "t", snapshots: {} as never, log: pino({ level: "silent" }) });
    const e = event(0, 1, "a", 1);
    const first = hub.encodeChange(e, false, "p1");
    assert.equal(hub.encodeChange(e, false, "p1"), first, "the same bytes for the next stream at the same position");
    const conflated = hub.encodeChange(e, true, "p1");
    assert.deepEqual(fromBinary(SubscribeResponseSchema, conflated), message(e, true, "p1"));
    const moved = hub.encodeChange(e, false, "p2");
    assert.notEqual(moved, first);
    assert.deepEqual(fromBinary(SubscribeResponseSchema, moved), message(e, false, "p2"));
    assert.deepEqual(fromBinary(SubscribeResponseSchema, first), message(e, false, "p1"), "bytes already handed out are not overwritten");
  });
});
