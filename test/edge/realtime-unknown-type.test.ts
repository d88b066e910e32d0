// Subscribe through the edge to a resource type that is not configured: NOT_FOUND at once
// (UNKNOWN_RESOURCE_TYPE, as a read of it is), not a silent stream until the deadline. The hub runs
// on the in-process bus behind a real mTLS server; the client is connect-web's Connect transport.
//
//   node --import tsx --test test/edge/realtime-unknown-type.test.ts
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { RealtimeService } from "../../gen/umw/v1/realtime_pb.js";
import { MemoryBus } from "../../runtime/memory-bus.js";
import { clientCredentials, serverCredentials } from "../../runtime/tls.js";
import { startEdge, type RunningEdge } from "../../services/edge/index.js";
import { startRealtimeHub, type RunningRealtimeHub } from "../../services/realtime/index.js";
import { testCerts } from "../support/certs.js";
import { testUpstreamClient } from "../support/edge-upstream-client.js";

const log = pino({ level: "silent" });
const certs = testCerts(["realtime", "edge"]);
let hub: RunningRealtimeHub;
let edge: RunningEdge;

before(async () => {
  const bus = new MemoryBus();
  await bus.ensureTopics([{ name: "entity-events", partitions: 2 }]);
  hub = await startRealtimeHub({
    bus,
    topic: "entity-events",
    snapshots: { read: async () => ({ entities: [], truncated: false }) },
    credentials: serverCredentials(certs.identity("realtime")),
    log,
    resourceTypes: ["todo"],
    drainTimeoutMs: 200,
  });
  // About an unknown type, not authentication: explicitly none.
  edge = await startEdge({ auth: { mode: "none" }, port: 0, upstreams: [{ service: RealtimeService, address: hub.address }], credentials: clientCredentials(certs.identity("edge")), upstreamClient: testUpstreamClient(), log, drainTimeoutMs: 200 });
});
after(async () => {
  await edge?.stop();
  await hub?.stop();
  certs.remove();
});

test("a type topic or an entity topic on an unknown type: NOT_FOUND UNKNOWN_RESOURCE_TYPE at once", async () => {
  const client = createClient(RealtimeService, createConnectTransport({ baseUrl: edge.url }));
  for (const topic of [{ target: { case: "type" as const, value: "nope" } }, { target: { case: "entity" as const, value: { type: "nope", id: "a1" } } }]) {
    const started = Date.now();
    const error = await (async () => {
      for await (const message of client.subscribe({ tenant: "acme", topics: [topic] }, { timeoutMs: 5_000 })) void message;
    })().then(
      () => assert.fail("the stream ended without an error"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof ConnectError, String(error));
    assert.equal(error.code, Code.NotFound, error.message);
    assert.ok(Date.now() - started < 2_000, `took ${Date.now() - started} ms`);
  }
});

test("a configured type opens the stream (its snapshot comes first)", async () => {
  const client = createClient(RealtimeService, createConnectTransport({ baseUrl: edge.url }));
  const controller = new AbortController();
  const stream = client.subscribe({ tenant: "acme", topics: [{ target: { case: "type", value: "todo" } }] }, { signal: controller.signal });
  const first = await stream[Symbol.asyncIterator]().next();
  controller.abort();
  assert.equal(first.done, false);
});
