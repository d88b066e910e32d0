// RealtimeService through the edge: the real hub (Kafka + Postgres, isolated by the harness) behind
// the real edge over mTLS, called by the browser transports (connect-web's Connect, binary and JSON,
// and gRPC-web, on Node's streaming fetch): snapshot then a live change, and the cross-tenant refusal
// with its reason.
//
//   node --import tsx --test test/realtime/edge.test.ts
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { createRegistry, type MessageInitShape } from "@bufbuild/protobuf";
import { ErrorInfoSchema, file_google_rpc_error_details } from "../../gen/google/rpc/error_details_pb.js";
import { RealtimeService, type SubscribeRequestSchema, type SubscribeResponse } from "../../gen/umw/v1/realtime_pb.js";
import { clientCredentials } from "../../runtime/tls.js";
import { startEdge, type RunningEdge } from "../../services/edge/index.js";
import type { RunningRealtimeHub } from "../../services/realtime/index.js";
import { waitFor } from "../support/wait.js";
import { Harness, log, unique } from "./harness.js";

const TYPE = "doc";
// A JSON client needs the types of Any values it may meet (google.rpc.Status details in a StreamReset).
const jsonOptions = { registry: createRegistry(file_google_rpc_error_details) };
const entityTopic = (tenant: string, id: string) => ({ target: { case: "entity" as const, value: { tenant, type: TYPE, id } } });


/** A browser-protocol stream read message by message, with a bound on each wait. */
class WebReader {
  readonly messages: SubscribeResponse[] = [];
  private readonly controller = new AbortController();
  private readonly iterator: AsyncIterator<SubscribeResponse>;

  constructor(client: Client<typeof RealtimeService>, request: MessageInitShape<typeof SubscribeRequestSchema>) {
    this.iterator = client.subscribe(request, { signal: this.controller.signal })[Symbol.asyncIterator]();
  }

  async next(timeoutMs = 10_000): Promise<SubscribeResponse | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no message within ${timeoutMs} ms`)), timeoutMs)));
    try {
      const result = await Promise.race([this.iterator.next(), timeout]);
      if (result.done) return undefined;
      this.messages.push(result.value);
      return result.value;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The next message that is not a heartbeat. */
  async nextData(timeoutMs = 10_000): Promise<SubscribeResponse | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const message = await this.next(Math.max(1, deadline - Date.now()));
      if (message?.message.case !== "heartbeat") return message;
    }
  }

  close(): void {
    this.controller.abort();
    void this.iterator.return?.().catch(() => undefined);
  }
}

describe("RealtimeService through the edge (Connect and gRPC-web)", { timeout: 40_000 }, () => {
  const h = new Harness();
  let hub: RunningRealtimeHub;
  let edge: RunningEdge;
  const readers: WebReader[] = [];

  before(async () => {
    await h.setUp();
    hub = await h.startHub({});
    edge = await startEdge({
      port: 0,
      upstreams: [{ service: RealtimeService, address: hub.address }],
      credentials: clientCredentials(h.certs.identity("edge")),
      log,
      drainTimeoutMs: 500,
    });
  });

  after(async () => {
    for (const reader of readers) reader.close();
    await edge?.stop();
    await h.tearDown();
  });

  const transports: [name: string, make: () => Transport][] = [
    ["Connect (binary)", () => createConnectTransport({ baseUrl: edge.url, useBinaryFormat: true })],
    ["Connect (JSON)", () => createConnectTransport({ baseUrl: edge.url, jsonOptions })],
    ["gRPC-web", () => createGrpcWebTransport({ baseUrl: edge.url, useBinaryFormat: true })],
  ];

  for (const [name, make] of transports) {
    test(`${name}: snapshot, then a live change, over streaming fetch`, async () => {
      const tenant = unique("edge");
      const id = "e1";
      await h.write(tenant, TYPE, id, { n: 1 });
      await h.settle([hub]);
      const reader = new WebReader(createClient(RealtimeService, make()), { tenant, topics: [entityTopic(tenant, id)], snapshot: true });
      readers.push(reader);

      const snapshot = await reader.nextData();
      assert.equal(snapshot?.message.case, "snapshot");
      assert.deepEqual(
        snapshot.message.value.entities.map((entity) => [entity.id, entity.version, entity.data]),
        [[id, 1n, { n: 1 }]],
      );
      assert.ok(snapshot.position.length > 0, "the snapshot carries a position");

      // Written only after the snapshot reached the client: it can arrive only as a live change.
      await h.write(tenant, TYPE, id, { n: 2 });
      const change = await reader.nextData();
      assert.equal(change?.message.case, "change");
      assert.equal(change.message.value.entity?.version, 2n);
      assert.deepEqual(change.message.value.entity?.data, { n: 2 });
      assert.equal(change.message.value.conflated, false);
      assert.ok(change.position.length > 0 && change.position !== snapshot.position, "the change moves the position on");

      // Closing the browser stream cancels the upstream one: the hub lets it go.
      assert.equal(hub.stats().streams, 1);
      reader.close();
      await waitFor(() => hub.stats().streams === 0, { what: "the edge cancelled the upstream stream" });
    });

    test(`${name}: a cross-tenant subscription is PERMISSION_DENIED with reason CROSS_TENANT_SUBSCRIPTION`, async () => {
      const client = createClient(RealtimeService, make());
      const [mine, theirs] = [unique("mine"), unique("theirs")];
      const request = { tenant: mine, topics: [entityTopic(theirs, "secret")], snapshot: true };
      const error = await (async () => {
        for await (const message of client.subscribe(request)) assert.fail(`no message expected, got ${message.message.case}`);
      })().then(
        () => assert.fail("expected PERMISSION_DENIED"),
        (caught: unknown) => caught,
      );
      assert.ok(error instanceof ConnectError, `expected a ConnectError, got ${String(error)}`);
      assert.equal(error.code, Code.PermissionDenied);
      const info = error.findDetails(ErrorInfoSchema)[0];
      assert.equal(info?.reason, "CROSS_TENANT_SUBSCRIPTION");
      assert.equal(info?.domain, "umw.dev");
      assert.deepEqual(info?.metadata, { tenant: theirs, callerTenant: mine });
      assert.equal(hub.stats().streams, 0);
    });
  }
});
