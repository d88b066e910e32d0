// Child process of the fan-out bench: a load client holding many RealtimeService.Subscribe streams
// over a few mTLS HTTP/2 connections (raw node:http2 and gRPC framing: grpc-js's client costs more
// per message than the hub, and the load client must not be what saturates first). Commands:
//   open {address, certsDir, connections, tenant, type, entityIds, streams: Int32Array of entity indexes}
//   mark → starts a window (CPU, latencies, changes);  progress → {changes, ended}
//   window → WindowReport of the window so far (and starts a new one)
//   report {expected: Int32Array (last version published per entity)} → StreamReport over the whole run
//   close
import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream } from "node:http2";
import { fromBinary, toBinary, create } from "@bufbuild/protobuf";
import { SubscribeRequestSchema, SubscribeResponseSchema } from "../../gen/umw/v1/realtime_pb.js";
import { loadIdentity } from "../../runtime/tls.js";
import { serveParent } from "./fanout-ipc.js";

export interface LoadOpen {
  /** host:port of the hub. */
  readonly address: string;
  readonly certsDir: string;
  /** mTLS identity of the client. */
  readonly identity: string;
  readonly connections: number;
  readonly tenant: string;
  readonly type: string;
  readonly entityIds: readonly string[];
  /** Entity index of each stream this process holds. */
  readonly streams: Int32Array;
}

export interface StreamReport {
  readonly streams: number;
  /** Streams that ended (status or reset) before close. */
  readonly ended: number;
  readonly endings: Record<string, number>;
  /** Change messages received. */
  readonly changes: number;
  /** Distinct (stream, version) pairs received. */
  readonly received: number;
  /** Expected (stream, version) pairs not received: expected − received. */
  readonly lost: number;
  /** Of `lost`, versions a later conflated message stood in for (latest state delivered, marked). */
  readonly lostToConflation: number;
  /** Of `lost`, versions missing from streams the hub ended explicitly (status in `endings`). */
  readonly lostToEndedStreams: number;
  /** Of `lost`, versions skipped with no conflated message after them, or never reached by a stream still open: silent holes. */
  readonly silentHoles: number;
  readonly duplicates: number;
  readonly conflatedMessages: number;
  readonly heartbeats: number;
  readonly wrongEntity: number;
  readonly rssBytes: number;
}

/** One measuring window (from "mark" or the previous "window"). */
export interface WindowReport {
  readonly changes: number;
  /** publish → receive, ms, one per change message of the window. */
  readonly latencies: Float64Array;
  /** Wall clock (ms) of the first and last change received in the window; 0 when none. */
  readonly firstReceiveAt: number;
  readonly lastReceiveAt: number;
  readonly cpuPercent: number;
}

const PATH = "/umw.v1.RealtimeService/Subscribe";
const wallNow = () => performance.timeOrigin + performance.now();

let sessions: ClientHttp2Session[] = [];
let calls: ClientHttp2Stream[] = [];
let entityOf: Int32Array = new Int32Array(0);
let entityIds: readonly string[] = [];
let last = new Int32Array(0);
let received = new Int32Array(0);
let skippedByConflation = new Int32Array(0);
let silentGaps = new Int32Array(0);
let endedAt = new Uint8Array(0);
const endings: Record<string, number> = {};
let latencies = new Float64Array(1 << 16);
let latencyCount = 0;
const counters = { changes: 0, duplicates: 0, conflated: 0, heartbeats: 0, wrongEntity: 0, ended: 0 };
let windowChanges = 0;
let firstReceiveAt = 0;
let lastReceiveAt = 0;
let closing = false;
let mark = { cpu: process.cpuUsage(), at: performance.now() };

function noteLatency(ms: number): void {
  if (latencyCount === latencies.length) {
    const grown = new Float64Array(latencies.length * 2);
    grown.set(latencies);
    latencies = grown;
  }
  latencies[latencyCount++] = ms;
}

function onMessage(local: number, bytes: Uint8Array, at: number): void {
  const response = fromBinary(SubscribeResponseSchema, bytes);
  const { message } = response;
  if (message.case === "heartbeat") {
    counters.heartbeats++;
    return;
  }
  if (message.case !== "change") return;
  const entity = message.value.entity;
  counters.changes++;
  windowChanges++;
  if (!entity || entity.id !== entityIds[entityOf[local]!]) {
    counters.wrongEntity++;
    return;
  }
  const publishedAt = entity.data?.publishedAt;
  if (typeof publishedAt === "number") noteLatency(at - publishedAt);
  if (firstReceiveAt === 0) firstReceiveAt = at;
  lastReceiveAt = at;
  const version = Number(entity.version);
  const previous = last[local]!;
  if (message.value.conflated) counters.conflated++;
  if (version <= previous) {
    counters.duplicates++;
    return;
  }
  const skipped = version - previous - 1;
  if (skipped > 0) {
    if (message.value.conflated) skippedByConflation[local]! += skipped;
    else silentGaps[local]! += skipped;
  }
  last[local] = version;
  received[local]!++;
}

function ended(local: number, why: string): void {
  if (endedAt[local] || closing) return;
  endedAt[local] = 1;
  counters.ended++;
  endings[why] = (endings[why] ?? 0) + 1;
}

function startWindow(): void {
  mark = { cpu: process.cpuUsage(), at: performance.now() };
  latencyCount = 0;
  windowChanges = 0;
  firstReceiveAt = 0;
  lastReceiveAt = 0;
}

function openStream(session: ClientHttp2Session, local: number, body: Uint8Array): ClientHttp2Stream {
  const call = session.request(
    { ":method": "POST", ":path": PATH, "content-type": "application/grpc+proto", te: "trailers" },
    { endStream: false },
  );
  let pending: Buffer | undefined;
  call.on("data", (chunk: Buffer) => {
    const at = wallNow();
    const buffer = pending ? Buffer.concat([pending, chunk]) : chunk;
    let offset = 0;
    while (buffer.length - offset >= 5) {
      const length = buffer.readUInt32BE(offset + 1);
      if (buffer.length - offset - 5 < length) break;
      onMessage(local, buffer.subarray(offset + 5, offset + 5 + length), at);
      offset += 5 + length;
    }
    pending = offset === buffer.length ? undefined : buffer.subarray(offset);
  });
  call.on("trailers", (trailers) => {
    const status = String(trailers["grpc-status"] ?? "?");
    if (status !== "0") ended(local, `grpc-status ${status}: ${String(trailers["grpc-message"] ?? "")}`.slice(0, 160));
  });
  call.on("response", (headers) => {
    // A trailers-only refusal comes as the response headers.
    const status = headers["grpc-status"];
    if (status !== undefined && String(status) !== "0") ended(local, `grpc-status ${String(status)}: ${String(headers["grpc-message"] ?? "")}`.slice(0, 160));
  });
  call.on("error", (error: Error) => ended(local, `error: ${error.message}`.slice(0, 160)));
  call.on("close", () => ended(local, "closed by the server"));
  const frame = new Uint8Array(5 + body.length);
  new DataView(frame.buffer).setUint32(1, body.length);
  frame.set(body, 5);
  call.end(frame);
  return call;
}

serveParent({
  async open(args: LoadOpen) {
    const identity = loadIdentity(args.certsDir, args.identity);
    entityIds = args.entityIds;
    entityOf = args.streams;
    const n = entityOf.length;
    last = new Int32Array(n);
    received = new Int32Array(n);
    skippedByConflation = new Int32Array(n);
    silentGaps = new Int32Array(n);
    endedAt = new Uint8Array(n);
    sessions = await Promise.all(
      Array.from(
        { length: args.connections },
        () =>
          new Promise<ClientHttp2Session>((resolve, reject) => {
            const session = connect(`https://${args.address}`, {
              ca: identity.ca,
              cert: identity.client.cert,
              key: identity.client.key,
              // Thousands of streams on one connection: lift the client-side defaults (100 streams, 10 MB).
              peerMaxConcurrentStreams: 1_000_000,
              maxSessionMemory: 1_000,
            });
            session.once("connect", () => resolve(session));
            session.once("error", reject);
          }),
      ),
    );
    for (const session of sessions) session.on("error", () => undefined);
    // One request body per entity, shared by its streams.
    const bodies = entityIds.map((id) =>
      toBinary(SubscribeRequestSchema, create(SubscribeRequestSchema, { tenant: args.tenant, topics: [{ target: { case: "entity", value: { tenant: args.tenant, type: args.type, id } } }] })),
    );
    calls = new Array(n);
    for (let local = 0; local < n; local++) {
      calls[local] = openStream(sessions[local % sessions.length]!, local, bodies[entityOf[local]!]!);
      // Let the sessions write what is queued now and then.
      if (local % 250 === 249) await new Promise((resolve) => setImmediate(resolve));
    }
    return { requested: n, connections: sessions.length };
  },
  mark() {
    startWindow();
    return {};
  },
  window(): WindowReport {
    const cpu = process.cpuUsage(mark.cpu);
    const report: WindowReport = {
      changes: windowChanges,
      latencies: latencies.slice(0, latencyCount),
      firstReceiveAt,
      lastReceiveAt,
      cpuPercent: Math.round(((cpu.user + cpu.system) / ((performance.now() - mark.at) * 1000)) * 100),
    };
    startWindow();
    return report;
  },
  progress() {
    return { changes: counters.changes, ended: counters.ended };
  },
  report(args: { expected: Int32Array }): StreamReport {
    let expectedTotal = 0;
    let receivedTotal = 0;
    let lostToConflation = 0;
    let silentHoles = 0;
    let lostToEndedStreams = 0;
    for (let local = 0; local < entityOf.length; local++) {
      const expected = args.expected[entityOf[local]!]!;
      expectedTotal += expected;
      receivedTotal += received[local]!;
      lostToConflation += skippedByConflation[local]!;
      // Gaps without a conflated message after them, and versions never reached at the end.
      silentHoles += silentGaps[local]!;
      const tail = Math.max(0, expected - last[local]!);
      if (endedAt[local]) lostToEndedStreams += tail;
      else silentHoles += tail;
    }
    return {
      streams: entityOf.length,
      ended: counters.ended,
      endings: { ...endings },
      changes: counters.changes,
      received: receivedTotal,
      lost: expectedTotal - receivedTotal,
      lostToConflation,
      lostToEndedStreams,
      silentHoles,
      duplicates: counters.duplicates,
      conflatedMessages: counters.conflated,
      heartbeats: counters.heartbeats,
      wrongEntity: counters.wrongEntity,
      rssBytes: process.memoryUsage().rss,
    };
  },
  async close() {
    closing = true;
    for (const call of calls) if (!call.destroyed) call.close(constants.NGHTTP2_CANCEL);
    await Promise.all(sessions.map((session) => new Promise<void>((resolve) => (session.destroyed ? resolve() : session.close(() => resolve())))));
    return {};
  },
});
