// The browser side of test/browser: bundled by esbuild at test time, loaded by index.html from a
// static server on another origin than the edge, and driven by the test through window.umw.
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { QueryService } from "../../gen/umw/v1/query_pb.js";
import { RealtimeService } from "../../gen/umw/v1/realtime_pb.js";

export type Protocol = "connect" | "grpc-web";

/** What a call ended with, as plain data the test can read. */
export type CallResult =
  | { readonly ok: true; readonly title: unknown; readonly version: string; readonly ms: number }
  | { readonly ok: false; readonly code: string; readonly message: string; readonly ms: number };

export interface StreamView {
  readonly protocol: Protocol;
  /** Entity ids of the snapshot (once it arrived) and of every change since, with their titles. */
  readonly snapshot: boolean;
  readonly changes: ReadonlyArray<{ readonly id: string; readonly title: unknown; readonly version: string }>;
  /** Why it ended; undefined while open. */
  readonly ended: string | undefined;
}

const transports = new Map<string, Transport>();
function transport(baseUrl: string, protocol: Protocol): Transport {
  const key = `${protocol} ${baseUrl}`;
  let found = transports.get(key);
  if (!found) {
    // Connect with the binary codec: Envoy's connect_grpc_bridge turns Connect JSON into gRPC with
    // `application/grpc+json`, which the grpc-js services do not decode (a documented difference).
    found = protocol === "connect" ? createConnectTransport({ baseUrl, useBinaryFormat: true }) : createGrpcWebTransport({ baseUrl });
    transports.set(key, found);
  }
  return found;
}

function log(line: string): void {
  const pre = document.getElementById("log")!;
  pre.textContent += `${new Date().toISOString().slice(11, 23)} ${line}\n`;
}

async function getEntity(baseUrl: string, protocol: Protocol, tenant: string, type: string, id: string): Promise<CallResult> {
  const started = performance.now();
  try {
    const { entity } = await createClient(QueryService, transport(baseUrl, protocol)).getEntity({ tenant, type, id });
    const ms = performance.now() - started;
    log(`${protocol} GetEntity ${id}: ${JSON.stringify(entity?.data?.title)} v${entity?.version} (${ms.toFixed(0)} ms)`);
    return { ok: true, title: entity?.data?.title, version: String(entity?.version ?? ""), ms };
  } catch (error) {
    const failure = ConnectError.from(error);
    log(`${protocol} GetEntity ${id}: ${Code[failure.code]} ${failure.rawMessage}`);
    return { ok: false, code: Code[failure.code], message: failure.rawMessage, ms: performance.now() - started };
  }
}

const streams: Array<StreamView & { changes: StreamView["changes"] & unknown[]; snapshot: boolean; ended: string | undefined; abort: AbortController }> = [];

/** Opens Subscribe on every entity of a type (snapshot first); returns the stream's index. */
function subscribe(baseUrl: string, protocol: Protocol, tenant: string, type: string): number {
  const stream = { protocol, snapshot: false, changes: [] as Array<{ id: string; title: unknown; version: string }>, ended: undefined as string | undefined, abort: new AbortController() };
  const index = streams.push(stream) - 1;
  const client = createClient(RealtimeService, transport(baseUrl, protocol));
  void (async () => {
    try {
      for await (const response of client.subscribe({ tenant, topics: [{ target: { case: "type", value: type } }], snapshot: true }, { signal: stream.abort.signal })) {
        if (response.message.case === "snapshot") {
          stream.snapshot = true;
          log(`${protocol} stream #${index}: snapshot of ${response.message.value.entities.length}`);
        } else if (response.message.case === "change") {
          const entity = response.message.value.entity;
          stream.changes.push({ id: entity?.id ?? "", title: entity?.data?.title, version: String(entity?.version ?? "") });
          log(`${protocol} stream #${index}: change ${entity?.id} ${JSON.stringify(entity?.data?.title)} v${entity?.version}`);
        }
      }
      stream.ended = "completed";
    } catch (error) {
      stream.ended = stream.abort.signal.aborted ? "aborted" : `${Code[ConnectError.from(error).code]}: ${ConnectError.from(error).rawMessage}`;
    }
    if (!stream.abort.signal.aborted) log(`${protocol} stream #${index}: ended ${stream.ended}`);
  })();
  return index;
}

function streamViews(): StreamView[] {
  return streams.map(({ protocol, snapshot, changes, ended }) => ({ protocol, snapshot, changes, ended }));
}

function closeStreams(): void {
  for (const stream of streams) if (stream.ended === undefined) stream.abort.abort();
}

/** A plain CORS fetch; a refusal by the browser is `{ refused: message }`. */
async function rest(url: string): Promise<{ status: number; body: unknown } | { refused: string }> {
  try {
    const response = await fetch(url);
    const body: unknown = await response.json();
    log(`REST GET ${new URL(url).pathname}: ${response.status}`);
    return { status: response.status, body };
  } catch (error) {
    log(`REST GET ${new URL(url).pathname}: refused (${String(error)})`);
    return { refused: String(error) };
  }
}

/** The protocol each finished request to `origin` used, from Resource Timing. */
function protocols(origin: string): Array<{ name: string; nextHopProtocol: string }> {
  return (performance.getEntriesByType("resource") as PerformanceResourceTiming[])
    .filter((entry) => entry.name.startsWith(origin))
    .map((entry) => ({ name: entry.name, nextHopProtocol: entry.nextHopProtocol }));
}

const api = { getEntity, subscribe, streams: streamViews, closeStreams, rest, protocols, log };
export type PageApi = typeof api;
(window as unknown as { umw: PageApi }).umw = api;
log(`page loaded from ${location.origin}`);
