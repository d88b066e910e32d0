// RealtimeService through the edge: the real hub (Kafka + Postgres, isolated by the harness) behind
// the real edge over mTLS, called by the browser transports (connect-web's Connect, binary and JSON,
// and gRPC-web, on Node's streaming fetch): snapshot then a live change, and the cross-tenant refusal
// with its reason; the caller is the verified token's (a dev issuer from test/support), and a token
// that expires mid-stream ends the stream with UNAUTHENTICATED and the position to resume from.
//
//   node --import tsx --test test/realtime/edge.test.ts
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { createRegistry, fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";
import { ErrorInfoSchema, file_google_rpc_error_details } from "../../gen/google/rpc/error_details_pb.js";
import { RealtimeService, type SubscribeRequestSchema, type SubscribeResponse } from "../../gen/umw/v1/realtime_pb.js";
import { clientCredentials } from "../../runtime/tls.js";
import { startEdge, type RunningEdge } from "../../services/edge/index.js";
import type { RunningRealtimeHub } from "../../services/realtime/index.js";
import { bearer, TestIssuer } from "../support/dev-tokens.js";
import { waitFor } from "../support/wait.js";
import { Harness, log, unique } from "./harness.js";
import { connectStream, curlGrpcWebStream, grpcStream, within, type OpenStream } from "./stream-open.js";
import { Metadata } from "@grpc/grpc-js";

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
  let issuer: TestIssuer;
  const readers: WebReader[] = [];

  before(async () => {
    await h.setUp();
    hub = await h.startHub({});
    issuer = await TestIssuer.create();
    edge = await startEdge({
      auth: issuer.auth(),
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
    issuer?.close();
    await h.tearDown();
  });

  const transports: [name: string, make: (token?: string) => Transport][] = [
    ["Connect (binary)", (token) => createConnectTransport({ baseUrl: edge.url, useBinaryFormat: true, interceptors: token ? [bearer(token)] : [] })],
    ["Connect (JSON)", (token) => createConnectTransport({ baseUrl: edge.url, jsonOptions, interceptors: token ? [bearer(token)] : [] })],
    ["gRPC-web", (token) => createGrpcWebTransport({ baseUrl: edge.url, useBinaryFormat: true, interceptors: token ? [bearer(token)] : [] })],
  ];

  const failureOf = async (stream: AsyncIterable<SubscribeResponse>): Promise<ConnectError> => {
    const error = await (async () => {
      for await (const message of stream) if (message.message.case !== "heartbeat") assert.fail(`no message expected, got ${message.message.case}`);
    })().then(
      () => assert.fail("expected the stream to fail"),
      (caught: unknown) => caught,
    );
    assert.ok(error instanceof ConnectError, `expected a ConnectError, got ${String(error)}`);
    return error;
  };

  for (const [name, make] of transports) {
    test(`${name}: snapshot, then a live change, over streaming fetch`, async () => {
      const tenant = unique("edge");
      const id = "e1";
      await h.write(tenant, TYPE, id, { n: 1 });
      await h.settle([hub]);
      const reader = new WebReader(createClient(RealtimeService, make(await issuer.token(tenant))), { tenant, topics: [entityTopic(tenant, id)], snapshot: true });
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
      const [mine, theirs] = [unique("mine"), unique("theirs")];
      const client = createClient(RealtimeService, make(await issuer.token(mine)));
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

    test(`${name}: no token or a bogus one is UNAUTHENTICATED before the hub is asked; another tenant's path is PERMISSION_DENIED`, async () => {
      const tenant = unique("anon");
      const request = { tenant, topics: [entityTopic(tenant, "e1")], snapshot: true };
      const missing = await failureOf(createClient(RealtimeService, make()).subscribe(request));
      assert.equal(missing.code, Code.Unauthenticated);
      assert.equal(missing.findDetails(ErrorInfoSchema)[0]?.reason, "TOKEN_MISSING");
      const bogus = await failureOf(createClient(RealtimeService, make("not-a-token")).subscribe(request));
      assert.equal(bogus.code, Code.Unauthenticated);
      assert.equal(bogus.findDetails(ErrorInfoSchema)[0]?.reason, "TOKEN_INVALID");
      const foreign = await failureOf(createClient(RealtimeService, make(await issuer.token(unique("other")))).subscribe(request));
      assert.equal(foreign.code, Code.PermissionDenied);
      assert.equal(foreign.findDetails(ErrorInfoSchema)[0]?.reason, "TENANT_MISMATCH");
      assert.equal(hub.stats().streams, 0);
    });

    test(`${name}: a token that expires mid-stream ends the stream UNAUTHENTICATED with the position to resume from`, async () => {
      const tenant = unique("exp");
      const id = "e1";
      await h.write(tenant, TYPE, id, { n: 1 });
      await h.settle([hub]);
      const ttlS = 2;
      const issuedAt = Date.now();
      const reader = new WebReader(createClient(RealtimeService, make(await issuer.token(tenant, { ttlS }))), { tenant, topics: [entityTopic(tenant, id)], snapshot: true });
      readers.push(reader);
      const snapshot = await reader.nextData();
      assert.equal(snapshot?.message.case, "snapshot");
      const error = await (async () => {
        for (;;) if ((await reader.nextData(10_000)) === undefined) return undefined;
      })().catch((caught: unknown) => caught);
      assert.ok(error instanceof ConnectError, `expected the stream to end with an error, got ${String(error)}`);
      assert.equal(error.code, Code.Unauthenticated);
      const info = error.findDetails(ErrorInfoSchema)[0];
      assert.equal(info?.reason, "TOKEN_EXPIRED");
      assert.equal(info?.metadata.position, snapshot.position, "the stream names where to resume");
      // It ended at the token's exp (whole seconds), not before, and not long after.
      const endedAfterMs = Date.now() - issuedAt;
      assert.ok(endedAfterMs >= (ttlS - 1) * 1000 && endedAfterMs < (ttlS + 3) * 1000, `ended after ${endedAfterMs} ms`);
      await waitFor(() => hub.stats().streams === 0, { what: "the hub let the expired stream go" });
    });
  }
});

// A subscription with nothing to send yet (no snapshot asked, no change, no heartbeat due) answers
// with its response headers when it opens: the hub sends them once the stream is accepted, and the
// edge passes them on at once, so a client can tell "subscribed and waiting" from "hung". Then a
// change arrives on that same stream. A refusal is still a status with its ErrorInfo.
describe("RealtimeService: an empty subscription opens at once (hub, and the Node edge over every protocol)", { timeout: 60_000 }, () => {
  const OPEN_WITHIN_MS = 3_000;
  const h = new Harness();
  let hub: RunningRealtimeHub;
  let edge: RunningEdge;
  let issuer: TestIssuer;
  const streams: OpenStream[] = [];

  before(async () => {
    await h.setUp();
    // No heartbeat within the test: the headers cannot ride on one.
    hub = await h.startHub({ heartbeatMs: 120_000 });
    issuer = await TestIssuer.create();
    edge = await startEdge({
      auth: issuer.auth(),
      port: 0,
      h2cPort: 0,
      upstreams: [{ service: RealtimeService, address: hub.address }],
      credentials: clientCredentials(h.certs.identity("edge")),
      log,
      drainTimeoutMs: 500,
    });
  });

  after(async () => {
    for (const stream of streams) stream.close();
    await edge?.stop();
    issuer?.close();
    await h.tearDown();
  });

  /** Opens the stream on an entity nobody wrote yet, checks its headers came in time, then that a write arrives on it. */
  const opensThenDelivers = async (open: (token: string, request: MessageInitShape<typeof SubscribeRequestSchema>) => OpenStream, contentType: RegExp, status: number | undefined) => {
    const tenant = unique("open");
    const id = "e1";
    const stream = open(await issuer.token(tenant), { tenant, topics: [entityTopic(tenant, id)] });
    streams.push(stream);
    try {
      const headers = await within(stream.headers, OPEN_WITHIN_MS, "the response headers of a subscription with nothing to send");
      assert.equal(headers.status, status);
      assert.match(headers.contentType, contentType);
      assert.equal(hub.stats().streams, 1, "the headers came from the hub, which holds the stream");
      await h.write(tenant, TYPE, id, { n: 1 });
      const change = await stream.next(10_000);
      assert.equal(change.message.case, "change");
      assert.equal(change.message.value.entity?.id, id);
      assert.equal(change.message.value.entity?.version, 1n);
      assert.ok(change.position.length > 0);
    } finally {
      stream.close();
      await waitFor(() => hub.stats().streams === 0, { what: "the stream let go" });
    }
  };

  test("the hub itself: response headers (gRPC initial metadata) before any message", async () => {
    const tenant = unique("hub");
    const controller = new AbortController();
    const headers = new Promise<Metadata>((resolve) => {
      const messages = h.client(hub).subscribe({ tenant, topics: [entityTopic(tenant, "e1")] }, { onHeaders: resolve, signal: controller.signal });
      void messages[Symbol.asyncIterator]().next().catch(() => undefined);
    });
    try {
      const metadata = await within(headers, OPEN_WITHIN_MS, "the hub's response headers");
      assert.ok(metadata instanceof Metadata);
      assert.equal(hub.stats().streams, 1, "sent once the hub holds the stream");
    } finally {
      controller.abort();
    }
    await waitFor(() => hub.stats().streams === 0, { what: "the stream let go" });
  });

  test("Connect over HTTP/1.1 (connect-node): 200 application/connect+proto at once, then a change", async () => {
    await opensThenDelivers((token, request) => connectStream(edge.url, "1.1", token, request), /^application\/connect\+proto/, 200);
  });

  test("Connect over HTTP/2 (connect-node, h2c): headers at once, then a change", async () => {
    await opensThenDelivers((token, request) => connectStream(`http://127.0.0.1:${edge.h2cPort}`, "2", token, request), /^application\/connect\+proto/, 200);
  });

  test("gRPC-web over HTTP/1.1 (curl): 200 application/grpc-web+proto at once, then a change", async () => {
    await opensThenDelivers((token, request) => curlGrpcWebStream(edge.url, false, token, request), /^application\/grpc-web\+proto/, 200);
  });

  test("gRPC-web over HTTP/2 (curl, h2c): 200 application/grpc-web+proto at once, then a change", async () => {
    await opensThenDelivers((token, request) => curlGrpcWebStream(`http://127.0.0.1:${edge.h2cPort}`, true, token, request), /^application\/grpc-web\+proto/, 200);
  });

  test("gRPC (grpc-js, h2c): response headers at once, then a change", async () => {
    await opensThenDelivers((token, request) => grpcStream(`127.0.0.1:${edge.h2cPort}`, token, request), /^application\/grpc/, undefined);
  });

  test("a stream that ends after its early headers (the token expires) ends with its status and reason: Connect, gRPC-web, gRPC", async () => {
    const tenant = unique("expiring");
    const request = { tenant, topics: [entityTopic(tenant, "e1")] };
    const token = await issuer.token(tenant, { ttlS: 2 });
    const opened = [connectStream(edge.url, "1.1", token, request), curlGrpcWebStream(edge.url, false, token, request), grpcStream(`127.0.0.1:${edge.h2cPort}`, token, request)];
    streams.push(...opened);
    try {
      for (const stream of opened) await within(stream.headers, OPEN_WITHIN_MS, "the response headers");
      const [connect, web, grpc] = await Promise.all(
        opened.map((stream) =>
          stream.next(10_000).then(
            (message) => assert.fail(`no message expected, got ${message.message.case}`),
            (caught: unknown) => caught,
          ),
        ),
      );
      assert.ok(connect instanceof ConnectError, String(connect));
      assert.equal(connect.code, Code.Unauthenticated);
      assert.equal(connect.findDetails(ErrorInfoSchema)[0]?.reason, "TOKEN_EXPIRED");
      assert.match(String(web), /grpc-status:\s*16/);
      const status = grpc as { code?: number; metadata?: Metadata };
      assert.equal(status.code, 16);
      const details = status.metadata?.get("grpc-status-details-bin")[0];
      assert.ok(details instanceof Buffer, "the trailers carry the Status");
      assert.ok(fromBinary(StatusSchema, details).details.some((detail) => anyUnpack(detail, ErrorInfoSchema)?.reason === "TOKEN_EXPIRED"));
    } finally {
      for (const stream of opened) stream.close();
    }
    await waitFor(() => hub.stats().streams === 0, { what: "the expired streams let go" });
  });

  test("a refused empty subscription is still PERMISSION_DENIED with its reason, over every protocol", async () => {
    const [mine, theirs] = [unique("mine"), unique("theirs")];
    const token = await issuer.token(mine);
    const open = hub.stats().streams;
    const request = { tenant: mine, topics: [entityTopic(theirs, "secret")] };
    const connect = connectStream(edge.url, "1.1", token, request);
    const error = await connect.next(OPEN_WITHIN_MS).then(
      () => assert.fail("expected PERMISSION_DENIED"),
      (caught: unknown) => caught,
    );
    assert.ok(error instanceof ConnectError, `expected a ConnectError, got ${String(error)}`);
    assert.equal(error.code, Code.PermissionDenied);
    assert.equal(error.findDetails(ErrorInfoSchema)[0]?.reason, "CROSS_TENANT_SUBSCRIPTION");
    const web = curlGrpcWebStream(edge.url, false, token, request);
    streams.push(web);
    const refusal = await web.next(OPEN_WITHIN_MS).then(
      () => assert.fail("expected a gRPC-web refusal"),
      (caught: unknown) => String(caught),
    );
    assert.match(refusal, /grpc-status:\s*7/);
    const grpc = grpcStream(`127.0.0.1:${edge.h2cPort}`, token, request);
    streams.push(grpc);
    const status = await grpc.next(OPEN_WITHIN_MS).then(
      () => assert.fail("expected a gRPC refusal"),
      (caught: unknown) => caught as { code?: number; metadata?: Metadata },
    );
    assert.equal(status.code, 7);
    const details = status.metadata?.get("grpc-status-details-bin")[0];
    assert.ok(details instanceof Buffer, "the status carries its details");
    const reasons = fromBinary(StatusSchema, details).details.map((detail) => anyUnpack(detail, ErrorInfoSchema)?.reason);
    assert.ok(reasons.includes("CROSS_TENANT_SUBSCRIPTION"), `reasons: ${reasons.join(", ")}`);
    assert.equal(hub.stats().streams, open, "no stream was admitted");
  });
});
