import type { ServiceDefinition, MethodDefinition } from "@grpc/grpc-js";
import {
  create,
  fromBinary,
  toBinary,
  type DescMessage,
  type DescMethod,
  type DescMethodServerStreaming,
  type DescMethodUnary,
  type DescService,
  type MessageInitShape,
  type MessageShape,
} from "@bufbuild/protobuf";
import type { CallContext } from "./call-context.js";
import { encodingOf } from "./encoded-once.js";

/** A unary handler answers one request with one response. */
export type UnaryHandler<I extends DescMessage, O extends DescMessage> = (
  request: MessageShape<I>,
  ctx: CallContext,
) => Promise<MessageInitShape<O>>;

/** A server-streaming handler yields responses until it returns or ctx.signal aborts. */
export type ServerStreamingHandler<I extends DescMessage, O extends DescMessage> = (
  request: MessageShape<I>,
  ctx: CallContext,
) => AsyncIterable<MessageInitShape<O>>;

/**
 * A server-streaming handler that may also yield responses already encoded (the message's protobuf
 * bytes): the server writes those as they are, so a message sent to many streams is encoded once
 * (the realtime hub's fan-out). Every ServerStreamingHandler is one.
 */
export type EncodingStreamingHandler<I extends DescMessage, O extends DescMessage> = (
  request: MessageShape<I>,
  ctx: CallContext,
) => AsyncIterable<MessageInitShape<O> | Uint8Array>;

export type MethodHandler<M extends DescMethod> =
  M extends DescMethodUnary<infer I, infer O>
    ? UnaryHandler<I, O>
    : M extends DescMethodServerStreaming<infer I, infer O>
      ? ServerStreamingHandler<I, O>
      : never;

/** A service implementation: one typed handler per method of the protobuf service. */
export type ServiceHandlers<S extends DescService> = {
  [K in keyof S["method"]]: MethodHandler<S["method"][K]>;
};

/** What a server takes: ServiceHandlers, whose streaming handlers may also yield encoded responses. */
export type ServableHandlers<S extends DescService> = {
  [K in keyof S["method"]]: S["method"][K] extends DescMethodServerStreaming<infer I, infer O> ? EncodingStreamingHandler<I, O> : MethodHandler<S["method"][K]>;
};

export function methodPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

/** The grpc-js definition of a protobuf-es service: paths, stream kinds and binary serializers. */
export function grpcServiceDefinition(service: DescService): ServiceDefinition {
  const definition: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const method of service.methods) {
    if (method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming") {
      throw new Error(`${methodPath(method)}: only unary and server-streaming methods are supported`);
    }
    definition[method.localName] = {
      path: methodPath(method),
      requestStream: false,
      responseStream: method.methodKind === "server_streaming",
      requestSerialize: (value) => Buffer.from(toBinary(method.input, toMessage(method.input, value))),
      requestDeserialize: (bytes: Buffer) => decodeRequest(method.input, bytes),
      responseSerialize: (value) =>
        value instanceof Uint8Array ? asBuffer(value) : (encodingOf(value) ?? Buffer.from(toBinary(method.output, toMessage(method.output, value)))),
      responseDeserialize: (bytes: Buffer) => fromBinary(method.output, bytes),
      originalName: method.name,
    };
  }
  return definition;
}

/**
 * A request that does not decode (garbage bytes, nesting past protobuf-es' recursion limit). grpc-js
 * answers INTERNAL for a throwing deserializer, so the failure travels to the server as this value
 * and the server answers INVALID_ARGUMENT: the caller's mistake, not umw's.
 */
export class UndecodableRequest {
  constructor(readonly reason: string) {}
}

function decodeRequest(schema: DescMessage, bytes: Buffer): unknown {
  try {
    return fromBinary(schema, bytes);
  } catch (error) {
    return new UndecodableRequest((error as Error).message);
  }
}

/** Pre-encoded bytes go out as they are (a Buffer view, no copy). */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Handlers may return init shapes ({...} without $typeName): build the message when needed. */
function toMessage<D extends DescMessage>(schema: D, value: unknown): MessageShape<D> {
  const candidate = value as { $typeName?: string };
  if (candidate.$typeName === schema.typeName) return value as MessageShape<D>;
  return create(schema, value as MessageInitShape<D>);
}
