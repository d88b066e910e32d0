import { create } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";
import { Code, ERROR_DOMAIN } from "../../runtime/errors.js";
import { statusEncodings, type StatusEncodings } from "../../runtime/status-encodings.js";
import { statusJson } from "./rest-conventions.js";

/**
 * One authentication refusal (UNAUTHENTICATED with an ErrorInfo reason) as each protocol reads it,
 * for Envoy to answer in the caller's protocol what jwt_authn refused in plain text: Envoy's own
 * answers carry no ErrorInfo and, for gRPC-web and Connect, no body their clients can read.
 */
export interface AuthRefusal extends StatusEncodings {
  /** google.rpc.Status JSON (REST). */
  readonly rest: string;
}

export function authRefusal(reason: string, message: string): AuthRefusal {
  const info = create(ErrorInfoSchema, { reason, domain: ERROR_DOMAIN });
  const status = create(StatusSchema, { code: Code.UNAUTHENTICATED, message, details: [anyPack(ErrorInfoSchema, info)] });
  return { ...statusEncodings(status), rest: statusJson(Code.UNAUTHENTICATED, reason, message) };
}

/** A Lua string literal of any bytes (every byte outside printable ASCII, and `\` and `"`, as `\ddd`). */
export function luaBytes(bytes: Uint8Array): string {
  let out = '"';
  for (const byte of bytes) out += byte >= 0x20 && byte < 0x7f && byte !== 0x5c && byte !== 0x22 ? String.fromCharCode(byte) : `\\${String(byte).padStart(3, "0")}`;
  return `${out}"`;
}

/** The refusal as a Lua table literal, one field per protocol (the names `protocol_of` in jwt-authn.ts returns). */
export function luaRefusal(refusal: AuthRefusal): string {
  const text = (value: string) => luaBytes(Buffer.from(value));
  return `{rest = ${text(refusal.rest)}, connect = ${text(refusal.connect)}, connect_stream = ${luaBytes(refusal.connectStream)}, grpc_web = ${luaBytes(refusal.grpcWeb)}, grpc_message = ${text(refusal.grpcMessage)}, grpc_details = ${text(refusal.grpcDetails)}}`;
}
