import { toBinary } from "@bufbuild/protobuf";
import { StatusSchema, type Status } from "../gen/google/rpc/status_pb.js";
import { Code } from "./errors.js";

/**
 * One google.rpc.Status as each protocol carries a refusal made in front of the Connect and gRPC-web
 * bridges (Envoy's answers): a Connect client reads neither a REST body nor a gRPC-web trailer.
 */
export interface StatusEncodings {
  /** A Connect unary error body: code name, message, details as `{type, value}` (value: base64 of the message). */
  readonly connect: string;
  /**
   * A Connect streaming answer: one end-stream frame (flag 2) with `{"error": …}`, all of it ASCII
   * (non-ASCII escaped, the JSON padded with spaces until no byte of the length prefix is 0x80 or
   * more) so that it survives as text where only a string can carry it (ext_authz's denied body).
   */
  readonly connectStream: Uint8Array;
  /** A gRPC-web answer body: one trailers frame (flag 0x80). */
  readonly grpcWeb: Uint8Array;
  /** The gRPC trailers: percent-encoded message, base64 google.rpc.Status. */
  readonly grpcMessage: string;
  readonly grpcDetails: string;
}

const base64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64").replace(/=+$/, "");

/** Connect's code names are gRPC's in lower case, but for `canceled`. */
export function connectCodeName(code: number): string {
  return code === Code.CANCELLED ? "canceled" : String(Code[code] ?? "UNKNOWN").toLowerCase();
}

const asciiJson = (value: unknown) => JSON.stringify(value).replace(/[\u0080-\uffff]/g, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`);

function asciiFrame(flag: number, json: string): Uint8Array {
  const asciiLength = (length: number) => [length >>> 24, (length >>> 16) & 0xff, (length >>> 8) & 0xff, length & 0xff].every((byte) => byte < 0x80);
  let text = json;
  while (!asciiLength(text.length)) text += " ";
  return frame(flag, Buffer.from(text, "ascii"));
}

function frame(flag: number, payload: Uint8Array): Uint8Array {
  const out = Buffer.alloc(5 + payload.length);
  out[0] = flag;
  out.writeUInt32BE(payload.length, 1);
  out.set(payload, 5);
  return out;
}

export function statusEncodings(status: Status): StatusEncodings {
  const connectError = {
    code: connectCodeName(status.code),
    message: status.message,
    details: status.details.map((detail) => ({ type: detail.typeUrl.slice(detail.typeUrl.lastIndexOf("/") + 1), value: base64(detail.value) })),
  };
  const grpcMessage = encodeURIComponent(status.message);
  const grpcDetails = base64(toBinary(StatusSchema, status));
  return {
    connect: JSON.stringify(connectError),
    connectStream: asciiFrame(2, asciiJson({ error: connectError })),
    grpcWeb: frame(0x80, Buffer.from(`grpc-status:${status.code}\r\ngrpc-message:${grpcMessage}\r\ngrpc-status-details-bin:${grpcDetails}\r\n`)),
    grpcMessage,
    grpcDetails,
  };
}
