import { fromBinary, type DescMessage, type DescMethodServerStreaming, type DescMethodUnary, type MessageInitShape, toBinary, create } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { ConnectError, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { credentials, makeGenericClientConstructor, Metadata, type Client, type ServiceError } from "@grpc/grpc-js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";
import type { EdgeUnderTest } from "../conformance/stack.js";

export const PROTOCOLS = ["rest", "connect", "grpc-web", "grpc"] as const;
export type Protocol = (typeof PROTOCOLS)[number];

/** One method call as every protocol makes it: the method and message, and its REST binding if it has one. */
export interface Call {
  readonly method: DescMethodUnary<DescMessage, DescMessage> | DescMethodServerStreaming<DescMessage, DescMessage>;
  readonly request: MessageInitShape<DescMessage>;
  readonly rest?: { readonly verb: string; readonly path: string; readonly body?: unknown };
  readonly headers: Readonly<Record<string, string>>;
}

/**
 * What a call came to. `allowed`: a unary success, a 2xx, or a stream that delivered a message or
 * stayed open after its response headers came (a stream without them is hung, not open); `denied`: 401/403, UNAUTHENTICATED/PERMISSION_DENIED; `other`: anything else (404,
 * 5xx, a transport failure), which is neither a proper refusal nor a success.
 */
export interface Outcome {
  readonly kind: "allowed" | "denied" | "other";
  /** HTTP status (REST) or the gRPC code name. */
  readonly code: string;
  /** The ErrorInfo reason of a failure, when it carried one. */
  readonly reason?: string;
  /** Messages a stream delivered before it failed or was left. */
  readonly events: number;
  readonly detail: string;
}

/** How long a stream that answered with its headers, and neither fails nor sends, counts as accepted. */
const OPEN_MS = 3_000;
const CALL_TIMEOUT_MS = 10_000;

/** A message as JSON text for a failure message (int64 fields are bigints). */
const show = (value: unknown) => JSON.stringify(value, (_, field: unknown) => (typeof field === "bigint" ? String(field) : field)).slice(0, 200);

const GRPC_CODE_NAMES: Record<number, string> = { 0: "OK", 1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND", 6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION", 10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED", 13: "INTERNAL", 14: "UNAVAILABLE", 15: "DATA_LOSS", 16: "UNAUTHENTICATED" };

function failure(code: number, reason: string | undefined, events: number, detail: string): Outcome {
  const name = GRPC_CODE_NAMES[code] ?? String(code);
  const kind = name === "PERMISSION_DENIED" || name === "UNAUTHENTICATED" ? "denied" : "other";
  return { kind, code: name, reason, events, detail };
}

/** Clients of one edge for every protocol; `close()` releases the gRPC channel. */
export class EdgeClients {
  private readonly connect: Transport;
  private readonly grpcWeb: Transport;
  private readonly grpc: Client;

  constructor(private readonly edge: EdgeUnderTest) {
    this.connect = createConnectTransport({ baseUrl: edge.url, useBinaryFormat: true });
    this.grpcWeb = createGrpcWebTransport({ baseUrl: edge.url, useBinaryFormat: true });
    const Generic = makeGenericClientConstructor({}, "umw");
    this.grpc = new Generic(edge.h2c, credentials.createInsecure());
  }

  /** Undefined when the protocol cannot express the call (REST has no Subscribe). */
  async call(protocol: Protocol, call: Call): Promise<Outcome | undefined> {
    switch (protocol) {
      case "rest":
        return call.rest ? this.restCall(call) : undefined;
      case "connect":
        return this.connectCall(this.connect, call);
      case "grpc-web":
        return this.connectCall(this.grpcWeb, call);
      case "grpc":
        return this.grpcCall(call);
    }
  }

  close(): void {
    this.grpc.close();
  }

  private async restCall(call: Call): Promise<Outcome> {
    const rest = call.rest!;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), CALL_TIMEOUT_MS);
    try {
      const response = await fetch(`${this.edge.url}${rest.path}`, {
        method: rest.verb,
        headers: { ...call.headers, ...(rest.body === undefined ? {} : { "content-type": "application/json" }) },
        body: rest.body === undefined ? undefined : JSON.stringify(rest.body),
        signal: controller.signal,
      });
      if (response.ok && call.method.methodKind === "server_streaming") {
        const line = await firstLine(response, OPEN_MS);
        controller.abort();
        const error = line === undefined ? undefined : ((JSON.parse(line) as { error?: RestStatus }).error);
        if (error) return failure(error.code, errorInfoReason(error), 0, JSON.stringify(error));
        return { kind: "allowed", code: String(response.status), events: line === undefined ? 0 : 1, detail: line ?? "(open)" };
      }
      const text = await response.text();
      if (response.ok) return { kind: "allowed", code: String(response.status), events: 0, detail: text.slice(0, 200) };
      let reason: string | undefined;
      try {
        reason = errorInfoReason(JSON.parse(text) as RestStatus);
      } catch {
        reason = undefined;
      }
      const kind = response.status === 401 || response.status === 403 ? "denied" : "other";
      return { kind, code: String(response.status), reason, events: 0, detail: text.slice(0, 300) };
    } catch (error) {
      return { kind: "other", code: "fetch-error", events: 0, detail: (error as Error).message };
    } finally {
      clearTimeout(timer);
    }
  }

  private async connectCall(transport: Transport, call: Call): Promise<Outcome> {
    const controller = new AbortController();
    let events = 0;
    try {
      if (call.method.methodKind === "unary") {
        const response = await transport.unary(call.method, controller.signal, CALL_TIMEOUT_MS, call.headers, call.request);
        return { kind: "allowed", code: "OK", events: 0, detail: show(response.message) };
      }
      const response = await transport.stream(call.method, controller.signal, CALL_TIMEOUT_MS, call.headers, single(call.request));
      const iterator = response.message[Symbol.asyncIterator]();
      const first = await Promise.race([iterator.next(), new Promise<"open">((resolve) => setTimeout(() => resolve("open"), OPEN_MS).unref())]);
      controller.abort();
      if (first === "open") return { kind: "allowed", code: "OK", events: 0, detail: "(open)" };
      if (!first.done) events++;
      return { kind: "allowed", code: "OK", events, detail: first.done ? "(ended without error)" : show(first.value) };
    } catch (error) {
      const connectError = ConnectError.from(error);
      const reason = connectError.findDetails(ErrorInfoSchema)[0]?.reason;
      return failure(connectError.code, reason, events, connectError.rawMessage);
    } finally {
      controller.abort();
    }
  }

  private grpcCall(call: Call): Promise<Outcome> {
    const path = `/${call.method.parent.typeName}/${call.method.name}`;
    const serialize = (value: MessageInitShape<DescMessage>) => Buffer.from(toBinary(call.method.input, create(call.method.input, value)));
    const deserialize = (bytes: Buffer) => fromBinary(call.method.output, bytes);
    const metadata = new Metadata();
    for (const [key, value] of Object.entries(call.headers)) metadata.set(key, value);
    const options = { deadline: Date.now() + CALL_TIMEOUT_MS };
    const fromError = (error: ServiceError, events: number) => failure(error.code, grpcErrorInfoReason(error.metadata), events, error.details);
    if (call.method.methodKind === "unary") {
      return new Promise((resolve) => {
        this.grpc.makeUnaryRequest(path, serialize, deserialize, call.request, metadata, options, (error: ServiceError | null, response?: unknown) =>
          resolve(error ? fromError(error, 0) : { kind: "allowed", code: "OK", events: 0, detail: show(response) }),
        );
      });
    }
    return new Promise((resolve) => {
      const stream = this.grpc.makeServerStreamRequest(path, serialize, deserialize, call.request, metadata, options);
      let events = 0;
      let settled = false;
      const settle = (outcome: Outcome) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        stream.cancel();
        resolve(outcome);
      };
      let opened = false;
      const timer = setTimeout(
        () => settle(opened ? { kind: "allowed", code: "OK", events, detail: "(open)" } : { kind: "other", code: "NO_HEADERS", events, detail: `no response headers within ${OPEN_MS} ms` }),
        OPEN_MS,
      );
      stream.on("metadata", () => (opened = true));
      stream.on("data", () => {
        events++;
        settle({ kind: "allowed", code: "OK", events, detail: "(message)" });
      });
      stream.on("error", (error: ServiceError) => settle(fromError(error, events)));
      stream.on("end", () => settle({ kind: "allowed", code: "OK", events, detail: "(ended without error)" }));
    });
  }
}

interface RestStatus {
  code: number;
  message?: string;
  details?: { "@type"?: string; reason?: string }[];
}

function errorInfoReason(status: RestStatus): string | undefined {
  return status.details?.find((detail) => detail["@type"] === "type.googleapis.com/google.rpc.ErrorInfo")?.reason;
}

function grpcErrorInfoReason(metadata: Metadata | undefined): string | undefined {
  const bin = metadata?.get("grpc-status-details-bin")[0];
  if (!(bin instanceof Buffer)) return undefined;
  const status = fromBinary(StatusSchema, bin);
  for (const detail of status.details) {
    const info = anyUnpack(detail, ErrorInfoSchema);
    if (info) return info.reason;
  }
  return undefined;
}

async function* single<T>(value: T): AsyncIterable<T> {
  yield value;
}

/** The first NDJSON line of a streaming REST answer, or undefined if none came within `ms`. */
async function firstLine(response: Response, ms: number): Promise<string | undefined> {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let text = "";
  const deadline = Date.now() + ms;
  while (!text.includes("\n")) {
    const chunk = await Promise.race([reader.read(), new Promise<"open">((resolve) => setTimeout(() => resolve("open"), Math.max(1, deadline - Date.now())).unref())]);
    if (chunk === "open") return undefined;
    if (chunk.done) break;
    text += decoder.decode(chunk.value, { stream: true });
  }
  const line = text.split("\n")[0]!.trim();
  return line === "" ? undefined : line;
}
