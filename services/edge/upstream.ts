import {
  Client,
  Metadata,
  type ChannelCredentials,
  type ClientOptions,
  type ClientReadableStream,
  type ClientUnaryCall,
  type ServiceError,
} from "@grpc/grpc-js";
import { fromBinary, toBinary, type DescMessage, type DescMethod, type DescService, type Message } from "@bufbuild/protobuf";
import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";

/** How one method travels over grpc-js: its path and binary codecs, built once. */
interface MethodCodec {
  readonly path: string;
  readonly serialize: (message: Message) => Buffer;
  readonly deserialize: (bytes: Buffer) => Message;
}

export type UnaryCallback = (error: ServiceError | null, response: Message | undefined, headers: Metadata | undefined) => void;

export type HealthState = "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN" | "UNKNOWN" | "UNREACHABLE";

/**
 * One internal gRPC service the edge forwards to, over grpc-js with the edge's mTLS identity.
 * Generic over the protobuf-es descriptor: every unary and server-streaming method of the service.
 * Unlike runtime/client.ts it hands back the raw grpc-js error, so the edge keeps the upstream's
 * trailers (e.g. umw-cache-status on a failure) and tells a service's own UNAVAILABLE from a
 * channel that cannot connect.
 */
export class Upstream {
  private readonly client: Client;
  private readonly codecs = new Map<DescMethod, MethodCodec>();

  constructor(
    readonly service: DescService,
    readonly address: string,
    credentials: ChannelCredentials,
    options: ClientOptions = {},
  ) {
    this.client = new Client(address, credentials, options);
    for (const method of service.methods) {
      const decoded = new DecodedResponses(method.output, MEMO_ENTRIES);
      this.codecs.set(method, {
        path: `/${service.typeName}/${method.name}`,
        serialize: serializer(method.input),
        deserialize: method.methodKind === "unary" ? (bytes) => decoded.decode(bytes) : (bytes) => fromBinary(method.output, bytes),
      });
    }
  }

  /** Starts a unary call; `deadline` is epoch milliseconds or Infinity. */
  unary(method: DescMethod, request: Message, metadata: Metadata, deadline: number, callback: UnaryCallback): ClientUnaryCall {
    const codec = this.codec(method);
    let headers: Metadata | undefined;
    // grpc-js takes a stack trace (`new Error()`) on every call, only to append "for call at" to
    // a failed call's stack; here that would always name this method, and taking it costs about as
    // much as decoding the response. None is taken (the limit is restored right after: the call
    // starts synchronously). The error itself (code, details, metadata) is unchanged.
    const stackTraceLimit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    let call: ClientUnaryCall;
    try {
      call = this.client.makeUnaryRequest(codec.path, codec.serialize, codec.deserialize, request, metadata, { deadline }, (error, response) =>
        callback(error, response, headers),
      );
    } finally {
      Error.stackTraceLimit = stackTraceLimit;
    }
    call.on("metadata", (received: Metadata) => (headers = received));
    return call;
  }

  /** Promise form of `unary`, cancelled by `signal`. */
  unaryAsync(method: DescMethod, request: Message, metadata: Metadata, deadline: number, signal?: AbortSignal): Promise<{ response: Message; headers: Metadata | undefined }> {
    return new Promise((resolve, reject) => {
      const call = this.unary(method, request, metadata, deadline, (error, response, headers) => {
        signal?.removeEventListener("abort", cancel);
        if (error) reject(error);
        else resolve({ response: response!, headers });
      });
      const cancel = () => call.cancel();
      if (signal?.aborted) call.cancel();
      else signal?.addEventListener("abort", cancel, { once: true });
    });
  }

  /** Starts a server-streaming call: an object-mode readable of response messages. */
  serverStream(method: DescMethod, request: Message, metadata: Metadata, deadline: number): ClientReadableStream<Message> {
    const codec = this.codec(method);
    return this.client.makeServerStreamRequest(codec.path, codec.serialize, codec.deserialize, request, metadata, { deadline });
  }

  /**
   * grpc.health.v1.Health/Check for this service (falling back to the server as a whole when the
   * server does not know the service name). Never rejects.
   */
  async health(timeoutMs: number): Promise<HealthState> {
    const state = await this.check(this.service.typeName, timeoutMs);
    return state === "SERVICE_UNKNOWN" ? this.check("", timeoutMs) : state;
  }

  close(): void {
    this.client.close();
  }

  private check(service: string, timeoutMs: number): Promise<HealthState> {
    return new Promise((resolve) => {
      this.client.makeUnaryRequest<string, HealthState>(
        "/grpc.health.v1.Health/Check",
        encodeHealthCheckRequest,
        decodeHealthCheckResponse,
        service,
        new Metadata(),
        { deadline: Date.now() + timeoutMs },
        (error, state) => {
          if (!error) resolve(state ?? "UNKNOWN");
          else resolve(error.code === 5 /* NOT_FOUND */ ? "SERVICE_UNKNOWN" : "UNREACHABLE");
        },
      );
    });
  }

  private codec(method: DescMethod): MethodCodec {
    const codec = this.codecs.get(method);
    if (!codec) throw new Error(`${method.parent.typeName}/${method.name} is not a method of ${this.service.typeName}`);
    return codec;
  }
}

/** Distinct unary responses whose decoded message is kept (per method), and the largest one kept. */
const MEMO_ENTRIES = 1024;
const MEMO_MAX_BYTES = 8 * 1024;

/**
 * Unary responses decoded once per distinct bytes: a cached entity comes back as the same bytes on
 * every read, so one decoded message serves them all (and the REST gateway renders its JSON once).
 * Messages handed out here are shared and must not be modified; oldest entry evicted first.
 */
class DecodedResponses {
  private readonly messages = new Map<string, Message>();

  constructor(
    private readonly schema: DescMessage,
    private readonly maxEntries: number,
  ) {}

  decode(bytes: Buffer): Message {
    if (this.maxEntries <= 0 || bytes.length > MEMO_MAX_BYTES) return fromBinary(this.schema, bytes);
    const key = bytes.toString("latin1");
    let message = this.messages.get(key);
    if (message === undefined) {
      message = fromBinary(this.schema, bytes);
      this.messages.set(key, message);
      if (this.messages.size > this.maxEntries) this.messages.delete(this.messages.keys().next().value!);
    }
    return message;
  }
}

function serializer(schema: DescMessage) {
  return (message: Message): Buffer => {
    const bytes = toBinary(schema, message);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

// grpc.health.v1: HealthCheckRequest { string service = 1; }, HealthCheckResponse { ServingStatus status = 1; }
const SERVING_STATUS: readonly HealthState[] = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

function encodeHealthCheckRequest(service: string): Buffer {
  const writer = new BinaryWriter();
  if (service) writer.tag(1, WireType.LengthDelimited).string(service);
  return Buffer.from(writer.finish());
}

function decodeHealthCheckResponse(bytes: Buffer): HealthState {
  const reader = new BinaryReader(bytes);
  let state: HealthState = "UNKNOWN";
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.Varint) state = SERVING_STATUS[reader.int32()] ?? "UNKNOWN";
    else reader.skip(wireType);
  }
  return state;
}
