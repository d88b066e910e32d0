import { toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";

/** Encoded bytes of the messages marked immutable with encodedOnce(). */
const encodings = new WeakMap<object, Buffer>();

/**
 * Marks a response message as immutable and encodes it now: the server then sends these bytes every
 * time the message is answered (runtime/service-definition.ts), instead of encoding it per call —
 * e.g. one GetEntityResponse per cached entity version. The message must never be modified after.
 */
export function encodedOnce<D extends DescMessage>(schema: D, message: MessageShape<D>): MessageShape<D> {
  if (!encodings.has(message)) {
    const bytes = toBinary(schema, message);
    encodings.set(message, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  }
  return message;
}

/** The bytes of a message marked with encodedOnce(), else undefined. */
export function encodingOf(message: unknown): Buffer | undefined {
  return typeof message === "object" && message !== null ? encodings.get(message) : undefined;
}
