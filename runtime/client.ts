import {
  Metadata,
  makeGenericClientConstructor,
  type ChannelCredentials,
  type Client,
  type ClientOptions,
  type ClientReadableStream,
  type ServiceError,
} from "@grpc/grpc-js";
import type {
  DescMessage,
  DescMethod,
  DescMethodServerStreaming,
  DescMethodUnary,
  DescService,
  MessageInitShape,
  MessageShape,
} from "@bufbuild/protobuf";
import { currentCall } from "./call-context.js";
import { RpcError } from "./errors.js";
import { grpcServiceDefinition } from "./service-definition.js";

export interface CallOptions {
  /** Milliseconds from now; never later than the deadline of the call being served, if any. */
  readonly timeoutMs?: number;
  readonly headers?: Readonly<Record<string, string>>;
  readonly signal?: AbortSignal;
  /** Receives the response headers (gRPC initial metadata). */
  readonly onHeaders?: (headers: Metadata) => void;
}

export type UnaryCall<I extends DescMessage, O extends DescMessage> = (
  request: MessageInitShape<I>,
  options?: CallOptions,
) => Promise<MessageShape<O>>;

export type ServerStreamingCall<I extends DescMessage, O extends DescMessage> = (
  request: MessageInitShape<I>,
  options?: CallOptions,
) => AsyncIterable<MessageShape<O>>;

export type ClientMethod<M extends DescMethod> =
  M extends DescMethodUnary<infer I, infer O>
    ? UnaryCall<I, O>
    : M extends DescMethodServerStreaming<infer I, infer O>
      ? ServerStreamingCall<I, O>
      : never;

/** A typed client of one protobuf service over grpc-js. `close()` releases the channel. */
export type MeshClient<S extends DescService> = { [K in keyof S["method"]]: ClientMethod<S["method"][K]> } & {
  close(): void;
};

export function createClient<S extends DescService>(
  service: S,
  address: string,
  credentials: ChannelCredentials,
  options: ClientOptions = {},
): MeshClient<S> {
  const Constructor = makeGenericClientConstructor(grpcServiceDefinition(service), service.typeName);
  const raw = new Constructor(address, credentials, options) as Client & Record<string, Function>;
  const client: Record<string, unknown> = { close: () => raw.close() };
  for (const method of service.methods) {
    client[method.localName] =
      method.methodKind === "server_streaming" ? serverStreaming(raw, method.localName) : unary(raw, method.localName);
  }
  return client as MeshClient<S>;
}

function unary(raw: Record<string, Function>, name: string) {
  return (request: unknown, options: CallOptions = {}) =>
    new Promise((resolve, reject) => {
      const call = raw[name]!.call(raw, request, metadataFor(options), { deadline: deadlineFor(options) }, (error: ServiceError | null, response: unknown) =>
        error ? reject(RpcError.fromServiceError(error)) : resolve(response),
      );
      if (options.onHeaders) call.on("metadata", options.onHeaders);
      cancelOnAbort(call, options.signal);
    });
}

function serverStreaming(raw: Record<string, Function>, name: string) {
  return async function* (request: unknown, options: CallOptions = {}) {
    const call: ClientReadableStream<unknown> = raw[name]!.call(raw, request, metadataFor(options), { deadline: deadlineFor(options) });
    if (options.onHeaders) call.on("metadata", options.onHeaders);
    cancelOnAbort(call, options.signal);
    try {
      for await (const message of call) yield message;
    } catch (error) {
      throw RpcError.fromServiceError(error as ServiceError);
    } finally {
      call.cancel();
    }
  };
}

function metadataFor(options: CallOptions): Metadata {
  const metadata = new Metadata();
  const requestId = currentCall()?.requestId;
  if (requestId) metadata.set("x-request-id", requestId);
  for (const [key, value] of Object.entries(options.headers ?? {})) metadata.set(key, value);
  return metadata;
}

/** The earlier of the caller's own timeout and the deadline of the call being served. */
function deadlineFor(options: CallOptions): Date | number {
  const inherited = currentCall()?.deadline?.getTime() ?? Infinity;
  const own = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs;
  const deadline = Math.min(inherited, own);
  return Number.isFinite(deadline) ? new Date(deadline) : Infinity;
}

function cancelOnAbort(call: { cancel(): void }, signal: AbortSignal | undefined): void {
  if (!signal) return;
  if (signal.aborted) call.cancel();
  else signal.addEventListener("abort", () => call.cancel(), { once: true });
}
