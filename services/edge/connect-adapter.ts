import { toBinary, create } from "@bufbuild/protobuf";
import { Code as ConnectCode, ConnectError, createConnectRouter, createContextValues, type ConnectRouter, type ConnectRouterOptions, type ContextValues } from "@connectrpc/connect";
import { universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";

type NodeServerRequest = Parameters<typeof universalRequestFromNodeRequest>[0];
type NodeServerResponse = Parameters<typeof universalResponseToNodeResponse>[1];import type { UniversalHandler, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { codeToHttpStatus, endStreamFlag, errorFromJsonBytes, errorToJson, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { findTrailerError, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { trailerFlag, trailerParse, trailerSerialize } from "@connectrpc/connect/protocol-grpc-web";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { ERROR_DOMAIN } from "../../runtime/errors.js";
import type { Logger } from "../../runtime/logger.js";
import { clampTimeoutHeaders } from "./call-timeouts.js";
import { strictCompressions } from "./strict-compression.js";
import { allowEarlyHeaders, headersOnce, type EarlyHeaderTarget } from "./stream-response.js";
import type { HttpRequest, HttpResponse } from "./http-exchange.js";

export interface ConnectAdapterOptions extends Pick<ConnectRouterOptions, "readMaxBytes" | "shutdownSignal" | "jsonOptions"> {
  readonly routes: (router: ConnectRouter) => void;
  /** Longest caller deadline (Connect-Timeout-Ms, grpc-timeout); longer ones are clamped to it. */
  readonly maxTimeoutMs: number;
  /** Values the handlers can read from their context (e.g. the HTTP request, for rate limits). */
  readonly contextValues?: (req: HttpRequest) => ContextValues;
  readonly log: Logger;
}

export type ConnectHandler = (req: HttpRequest, res: HttpResponse) => void;

/**
 * Connect, gRPC-web and gRPC (connect-node's protocol handlers) with the edge's promises kept on
 * the way in and out: caller deadlines clamped to a maximum before any timer is set; bodies that
 * do not decompress or parse are INVALID_ARGUMENT, not INTERNAL; every error carries a
 * google.rpc.ErrorInfo detail (reason in the umw.dev domain), also the ones connect-node answers
 * by itself (415, 405, bad timeout) and which it would otherwise send without a body.
 * Routes by exact path only: the caller checks the path is an RPC first.
 */
export function connectAdapter(options: ConnectAdapterOptions): { handle: ConnectHandler; has(path: string): boolean } {
  const router = createConnectRouter({
    acceptCompression: strictCompressions(),
    readMaxBytes: options.readMaxBytes,
    shutdownSignal: options.shutdownSignal,
    jsonOptions: options.jsonOptions,
  });
  options.routes(router);
  const handlers = new Map<string, UniversalHandler>();
  for (const handler of router.handlers) handlers.set(handler.requestPath, handler);

  const handle: ConnectHandler = (req, res) => {
    const path = (req.url ?? "/").split("?", 1)[0]!;
    const handler = handlers.get(path)!;
    clampTimeoutHeaders(req.headers, options.maxTimeoutMs);
    const nodeReq = req as unknown as NodeServerRequest;
    const nodeRes = res as unknown as NodeServerResponse;
    const values = allowEarlyHeaders(options.contextValues?.(req) ?? createContextValues(), res as unknown as EarlyHeaderTarget);
    const uReq = universalRequestFromNodeRequest(nodeReq, nodeRes, undefined, values);
    handler(uReq)
      // A stream's headers may be out already (stream-response.ts): they are not written twice.
      .then(async (uRes) => universalResponseToNodeResponse(await withErrorDetails(uRes, options), headersOnce(nodeRes)))
      .catch((reason: unknown) => {
        // The client went away, or the response broke mid-way: nothing left to answer.
        if (ConnectError.from(reason).code === ConnectCode.Aborted || res.destroyed) return;
        options.log.warn({ err: reason, path }, "connect response failed");
        res.destroy();
      });
  };
  return { handle, has: (path) => handlers.has(path) };
}

/** Rewrites the error of a response, in whichever form its protocol carries it. */
async function withErrorDetails(uRes: UniversalServerResponse, options: ConnectAdapterOptions): Promise<UniversalServerResponse> {
  const header = new Headers(uRes.header);
  const type = header.get("content-type") ?? "";
  if (uRes.body === undefined) {
    if (uRes.status < 400) return uRes;
    // connect-node's own 405 / 415: an empty body. Give it a Connect error with the reason.
    const code = uRes.status === 415 ? ConnectCode.InvalidArgument : uRes.status === 405 ? ConnectCode.Unimplemented : ConnectCode.InvalidArgument;
    const reason = uRes.status === 415 ? "UNSUPPORTED_MEDIA_TYPE" : uRes.status === 405 ? "METHOD_NOT_ALLOWED" : "INVALID_REQUEST";
    const message = uRes.status === 415 ? "unsupported content-type for an RPC" : uRes.status === 405 ? "only POST (and GET for side-effect-free methods) is allowed" : "invalid request";
    const body = errorToJsonBytes(withReason(new ConnectError(message, code), reason), options.jsonOptions ?? {});
    header.set("content-type", "application/json");
    header.set("content-length", String(body.byteLength));
    return { ...uRes, header, body: once(body) };
  }
  if (!isByteStream(uRes.body)) return uRes;
  const body = uRes.body;
  // gRPC: the status travels in the HTTP/2 trailers (or in the headers of a trailers-only answer).
  if (type.startsWith("application/grpc") && !type.startsWith("application/grpc-web")) {
    rewriteGrpcStatus(header);
    const trailer = uRes.trailer;
    return {
      ...uRes,
      header,
      body: (async function* () {
        yield* body;
        if (trailer) rewriteGrpcStatus(trailer);
      })(),
    };
  }
  if (type.startsWith("application/grpc-web")) {
    rewriteGrpcStatus(header);
    return { ...uRes, header, body: mapEnvelopes(body, trailerFlag, (data) => {
      const trailer = trailerParse(data);
      return rewriteGrpcStatus(trailer) ? trailerSerialize(trailer) : data;
    }) };
  }
  if (type.startsWith("application/connect+")) {
    return { ...uRes, body: mapEnvelopes(body, endStreamFlag, (data) => rewriteEndStream(data, options)) };
  }
  // Connect unary: an error is a small JSON body with a non-200 status, read whole to fix both.
  if (uRes.status === 200) return uRes;
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  const bytes = Buffer.concat(chunks);
  let error: ConnectError;
  try {
    error = errorFromJsonBytes(bytes, undefined, new ConnectError("unreadable error", ConnectCode.Unknown));
  } catch {
    return { ...uRes, body: once(bytes) };
  }
  const fixed = normalize(error);
  if (fixed === error) return { ...uRes, body: once(bytes) };
  const fixedBytes = errorToJsonBytes(fixed, options.jsonOptions ?? {});
  header.set("content-length", String(fixedBytes.byteLength));
  return { ...uRes, status: codeToHttpStatus(fixed.code), header, body: once(fixedBytes) };
}

/** Internal-looking failures of the caller's own bytes become INVALID_ARGUMENT; every error gets an ErrorInfo. */
export function normalize(error: ConnectError): ConnectError {
  let code = error.code;
  let reason: string | undefined;
  if (code === ConnectCode.Internal && /^(parse binary|decompression failed|protocol error)/.test(error.rawMessage)) {
    code = ConnectCode.InvalidArgument;
    reason = error.rawMessage.startsWith("decompression") ? "INVALID_ENCODING" : "INVALID_MESSAGE";
  }
  if (code === error.code && error.details.length > 0) return error;
  const fixed = new ConnectError(error.rawMessage, code, error.metadata);
  fixed.details = error.details.length > 0 ? error.details : [];
  return error.details.length > 0 ? fixed : withReason(fixed, reason ?? defaultReason(code, error.rawMessage));
}

function defaultReason(code: ConnectCode, message: string): string {
  if (code === ConnectCode.InvalidArgument) {
    if (message.startsWith("the body is not valid")) return "INVALID_ENCODING";
    if (message.includes("timeout")) return "INVALID_TIMEOUT";
    if (message.includes("JSON") || message.includes("decode")) return "INVALID_JSON";
    return "INVALID_MESSAGE";
  }
  if (code === ConnectCode.ResourceExhausted) return "MESSAGE_TOO_LARGE";
  if (code === ConnectCode.Unimplemented) return message.startsWith("unknown compression") ? "UNSUPPORTED_ENCODING" : "UNIMPLEMENTED";
  return ConnectCode[code]?.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase() ?? "UNKNOWN";
}

function withReason(error: ConnectError, reason: string): ConnectError {
  error.details.push({ type: ErrorInfoSchema.typeName, value: toBinary(ErrorInfoSchema, create(ErrorInfoSchema, { reason, domain: ERROR_DOMAIN })) });
  return error;
}

/** Normalizes the grpc-status in these headers, if any; true when changed. */
function rewriteGrpcStatus(headers: Headers): boolean {
  if (!headers.has("grpc-status")) return false;
  const error = findTrailerError(headers);
  if (!error) return false;
  const fixed = normalize(error);
  if (fixed === error) return false;
  headers.delete("grpc-status-details-bin");
  setTrailerStatus(headers, fixed);
  return true;
}

function rewriteEndStream(data: Uint8Array, options: ConnectAdapterOptions): Uint8Array {
  let json: { error?: unknown; metadata?: unknown };
  try {
    json = JSON.parse(Buffer.from(data).toString("utf8")) as typeof json;
  } catch {
    return data;
  }
  if (!json.error) return data;
  const error = errorFromJsonBytes(Buffer.from(JSON.stringify(json.error)), undefined, new ConnectError("unreadable error", ConnectCode.Unknown));
  const fixed = normalize(error);
  if (fixed === error) return data;
  json.error = errorToJson(fixed, options.jsonOptions ?? {});
  return Buffer.from(JSON.stringify(json));
}

/**
 * Rewrites the uncompressed envelopes with `flag` (the end of a stream) in a stream of envelopes.
 * connect-node hands out one envelope a chunk; anything else passes unchanged.
 */
async function* mapEnvelopes(body: AsyncIterable<Uint8Array>, flag: number, map: (data: Uint8Array) => Uint8Array): AsyncIterable<Uint8Array> {
  for await (const chunk of body) {
    if (chunk.byteLength >= 5 && chunk[0] === flag && new DataView(chunk.buffer, chunk.byteOffset).getUint32(1) === chunk.byteLength - 5) {
      const data = map(chunk.subarray(5));
      if (data !== chunk.subarray(5)) {
        const out = new Uint8Array(5 + data.byteLength);
        out[0] = flag;
        new DataView(out.buffer).setUint32(1, data.byteLength);
        out.set(data, 5);
        yield out;
        continue;
      }
    }
    yield chunk;
  }
}

function isByteStream(body: unknown): body is AsyncIterable<Uint8Array> {
  return typeof body === "object" && body !== null && Symbol.asyncIterator in body;
}

async function* once(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}
