import { Client, Metadata, type ChannelCredentials, type ClientOptions, type ClientReadableStream, type ClientUnaryCall } from "@grpc/grpc-js";
import {
  create,
  fromBinary,
  toBinary,
  type DescMessage,
  type DescMethod,
  type DescMethodServerStreaming,
  type DescMethodUnary,
  type DescService,
  type Message,
  type MessageInitShape,
  type MessageShape,
} from "@bufbuild/protobuf";
import { currentCall } from "./call-context.js";
import { encodingOf } from "./encoded-once.js";
import { composeChain, type ClientInterceptor, type ClientRequest, type ClientResponse, type ClientUnaryResponse, type Next } from "./interceptor.js";
import { clientDeadline } from "./interceptor-deadline.js";
import { clientErrors } from "./interceptor-errors.js";
import { clientForwardMetadata, DEFAULT_FORWARDED_METADATA } from "./interceptor-metadata.js";
import { clientRequestId } from "./interceptor-request-id.js";
import { clientMetrics, prometheusCallMetrics, type CallMetrics } from "./interceptor-metrics.js";
import { clientTracing } from "./interceptor-tracing.js";
import { methodPath } from "./service-definition.js";
import type { InProcessRoute } from "./in-process-transport.js";

export { wireError } from "./interceptor-errors.js";

export interface CallOptions {
  /** Milliseconds from now; never later than the deadline of the call being served, if any. */
  readonly timeoutMs?: number;
  /** Epoch milliseconds (Infinity: none); the earlier of this and `timeoutMs` counts. */
  readonly deadline?: number;
  /** Request metadata; a Metadata object is sent as is (and may be added to by the interceptors). */
  readonly headers?: Readonly<Record<string, string>> | Metadata;
  readonly signal?: AbortSignal;
  /** Receives the response headers (gRPC initial metadata). */
  readonly onHeaders?: (headers: Metadata) => void;
}

export interface ServiceClientOptions {
  /** grpc-js channel options. */
  readonly channel?: ClientOptions;
  /** Run inside the default chain (tracing, error mapping, request id, deadline, metadata forwarding), in this order. */
  readonly interceptors?: readonly ClientInterceptor[];
  /** Headers of the call being served that every call made meanwhile carries on; default: W3C trace context. */
  readonly forwardMetadata?: readonly string[];
  /** Where each finished call is reported; default: `rpc_client_*` in the process registry (runtime/metrics.ts). */
  readonly metrics?: CallMetrics;
  /** A method's own response decoder (e.g. one that memoizes); undefined: protobuf-es fromBinary. */
  readonly responseDecoder?: (method: DescMethod) => ((bytes: Buffer) => Message) | undefined;
  /** Unary calls to a service hosted in this process skip the network (runtime/in-process-transport.ts). */
  readonly inProcess?: InProcessRoute;
  /** Unary calls over the network go through this transport instead of grpc-js (runtime/http2-unary-transport.ts); closed with the client. */
  readonly unaryTransport?: UnaryTransport;
}

/** What sends a unary call's bytes and gets its response, under the interceptor chain (grpc-js by default). */
export interface UnaryTransport {
  unary(path: string, serialize: (message: unknown) => Buffer, deserialize: (bytes: Buffer) => Message): Next<ClientRequest, ClientResponse>;
  close(): void;
}

/**
 * The mesh's one gRPC client: every unary and server-streaming method of a protobuf-es service
 * over a grpc-js channel, each call through the client interceptor chain (composed once per
 * method): failures become RpcErrors (the grpc-js error kept as `cause`, see `wireError`), the
 * request id and the deadline of the call being served travel on, and so do its trace headers.
 */
export class ServiceClient {
  /** The grpc-js channel, for calls outside the service (e.g. grpc.health.v1). */
  readonly grpc: Client;
  private readonly chains = new Map<DescMethod, Next<ClientRequest, ClientResponse>>();
  private readonly unaryTransport: UnaryTransport | undefined;

  constructor(
    readonly service: DescService,
    readonly address: string,
    credentials: ChannelCredentials,
    options: ServiceClientOptions = {},
  ) {
    this.grpc = new Client(address, credentials, options.channel ?? {});
    this.unaryTransport = options.unaryTransport;
    const interceptors: ClientInterceptor[] = [
      clientMetrics(options.metrics ?? prometheusCallMetrics("client")),
      clientTracing,
      clientErrors,
      clientRequestId,
      clientDeadline,
      clientForwardMetadata(options.forwardMetadata ?? DEFAULT_FORWARDED_METADATA),
      ...(options.interceptors ?? []),
    ];
    for (const method of service.methods) {
      const path = methodPath(method);
      const serialize = serializer(method.input);
      const deserialize = options.responseDecoder?.(method) ?? ((bytes: Buffer) => fromBinary(method.output, bytes));
      const overNetwork =
        method.methodKind === "server_streaming"
          ? streamingCall(this.grpc, path, serialize, deserialize)
          : (this.unaryTransport?.unary(path, serialize, deserialize) ?? unaryCall(this.grpc, path, serialize, deserialize));
      const terminal = options.inProcess ? options.inProcess.transport.terminal(method, options.inProcess.peer, overNetwork) : overNetwork;
      this.chains.set(method, composeChain(interceptors, terminal));
    }
  }

  /** One unary call: the response message and headers; rejects with an RpcError. */
  unary(method: DescMethod, message: unknown, options: CallOptions = {}): Promise<ClientUnaryResponse> {
    return this.chain(method)(request(method, message, options)) as Promise<ClientUnaryResponse>;
  }

  /** One server-streaming call, started when iterated; the iteration throws an RpcError on failure, and stopping it cancels the call. */
  async *serverStream(method: DescMethod, message: unknown, options: CallOptions = {}): AsyncIterable<Message> {
    const response = await this.chain(method)(request(method, message, options));
    if (response.stream) yield* response.message;
    else yield response.message;
  }

  close(): void {
    this.grpc.close();
    this.unaryTransport?.close();
  }

  private chain(method: DescMethod): Next<ClientRequest, ClientResponse> {
    const chain = this.chains.get(method);
    if (!chain) throw new Error(`${methodPath(method)} is not a method of ${this.service.typeName}`);
    return chain;
  }
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

/** A typed client of one protobuf service: a method per RPC. `close()` releases the channel. */
export type MeshClient<S extends DescService> = { [K in keyof S["method"]]: ClientMethod<S["method"][K]> } & {
  close(): void;
};

/** A typed view of a ServiceClient: `client.getEntity({...})` resolves to the response message. */
export function createClient<S extends DescService>(
  service: S,
  address: string,
  credentials: ChannelCredentials,
  channel: ClientOptions = {},
  options: Omit<ServiceClientOptions, "channel"> = {},
): MeshClient<S> {
  const client = new ServiceClient(service, address, credentials, { ...options, channel });
  const typed: Record<string, unknown> = { close: () => client.close() };
  for (const method of service.methods) {
    typed[method.localName] =
      method.methodKind === "server_streaming"
        ? (message: unknown, options?: CallOptions) => client.serverStream(method, message, options)
        : (message: unknown, options?: CallOptions) => client.unary(method, message, options).then(messageOf);
  }
  return typed as MeshClient<S>;
}

const messageOf = (response: ClientUnaryResponse) => response.message;

function request(method: DescMethod, message: unknown, options: CallOptions): ClientRequest {
  const own = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs;
  return {
    method,
    message,
    header: options.headers instanceof Metadata ? options.headers : metadataOf(options.headers),
    deadline: options.deadline === undefined ? own : Math.min(own, options.deadline),
    signal: options.signal,
    context: currentCall(),
    onHeader: options.onHeaders,
  };
}

function metadataOf(headers: Readonly<Record<string, string>> | undefined): Metadata {
  const metadata = new Metadata();
  if (headers) for (const key of Object.keys(headers)) metadata.set(key, headers[key]!);
  return metadata;
}

type Serialize = (message: unknown) => Buffer;
type Deserialize = (bytes: Buffer) => Message;

function unaryCall(grpc: Client, path: string, serialize: Serialize, deserialize: Deserialize): Next<ClientRequest, ClientResponse> {
  return (req) =>
    new Promise<ClientResponse>((resolve, reject) => {
      const { signal } = req;
      let header: Metadata | undefined;
      // grpc-js takes a stack trace (`new Error()`) on every call, only to append "for call at" to
      // a failed call's stack; it would always name this function, and taking it costs about as
      // much as decoding a response. None is taken (the limit is restored right after: the call
      // starts synchronously). The error itself (code, details, metadata) is unchanged.
      const stackTraceLimit = Error.stackTraceLimit;
      Error.stackTraceLimit = 0;
      let call: ClientUnaryCall;
      try {
        call = grpc.makeUnaryRequest(path, serialize, deserialize, req.message, req.header, { deadline: req.deadline }, (error, response) => {
          signal?.removeEventListener("abort", cancel);
          if (error) reject(error);
          else resolve({ stream: false, message: response!, header });
        });
      } finally {
        Error.stackTraceLimit = stackTraceLimit;
      }
      const { onHeader } = req;
      call.on("metadata", (received: Metadata) => {
        header = received;
        onHeader?.(received);
      });
      const cancel = () => call.cancel();
      if (signal?.aborted) call.cancel();
      else signal?.addEventListener("abort", cancel, { once: true });
    });
}

function streamingCall(grpc: Client, path: string, serialize: Serialize, deserialize: Deserialize): Next<ClientRequest, ClientResponse> {
  return async (req) => {
    const call = grpc.makeServerStreamRequest(path, serialize, deserialize, req.message, req.header, { deadline: req.deadline });
    if (req.onHeader) call.on("metadata", req.onHeader);
    const cancel = () => call.cancel();
    if (req.signal?.aborted) call.cancel();
    else req.signal?.addEventListener("abort", cancel, { once: true });
    return { stream: true, message: messages(call, req.signal, cancel) };
  };
}

async function* messages(call: ClientReadableStream<Message>, signal: AbortSignal | undefined, cancel: () => void): AsyncIterable<Message> {
  try {
    for await (const message of call) yield message as Message;
  } finally {
    signal?.removeEventListener("abort", cancel);
    call.cancel();
  }
}

/** Binary serializer of a request type; init shapes (no $typeName) are built first; messages marked encodedOnce go out as encoded. */
function serializer(schema: DescMessage): Serialize {
  return (value) => {
    const encoded = encodingOf(value);
    if (encoded) return encoded;
    const message = (value as { $typeName?: string }).$typeName === schema.typeName ? (value as Message) : create(schema, value as MessageInitShape<DescMessage>);
    const bytes = toBinary(schema, message);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}
