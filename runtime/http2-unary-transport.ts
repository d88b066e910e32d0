import { constants, type ClientHttp2Stream, type IncomingHttpHeaders, type IncomingHttpStatusHeader, type OutgoingHttpHeaders } from "node:http2";
import { Metadata, status as GrpcStatus } from "@grpc/grpc-js";
import type { Message } from "@bufbuild/protobuf";
import { Http2Connection, type Http2ConnectionOptions } from "./http2-connection.js";
import { wireFailure } from "./in-process-transport.js";
import type { ClientRequest, ClientResponse, Next } from "./interceptor.js";

/** What the servers see of this client (grpc-js says `grpc-node-js/<version>`). */
export const USER_AGENT = "umw-http2-unary/1";

/** grpc-js' default: larger responses fail RESOURCE_EXHAUSTED. */
const DEFAULT_MAX_RECEIVE_BYTES = 4 * 1024 * 1024;

export interface Http2UnaryTransportOptions extends Http2ConnectionOptions {
  /** Largest response message (grpc-js `grpc.max_receive_message_length`); default 4 MiB. */
  readonly maxReceiveMessageBytes?: number;
}

/**
 * Unary gRPC calls over one node:http2 session per upstream (Http2Connection), under the mesh
 * client's interceptor chain (runtime/client.ts): it only sends the request bytes and gets the
 * response bytes and status, where grpc-js would run its own channel, resolver, load balancer,
 * filter stack and per-call objects. The wire is gRPC over HTTP/2 as the spec has it
 * (doc/PROTOCOL-HTTP2.md of grpc/grpc); failures reach the chain as the errors grpc-js would raise
 * (code, details, trailers as Metadata: see wireFailure), so every interceptor and the edge's
 * error mapping stay as they are. Server-streaming calls stay on grpc-js.
 */
export class Http2UnaryTransport {
  private readonly connection: Http2Connection;
  private readonly maxReceiveBytes: number;

  constructor(address: string, options: Http2UnaryTransportOptions = {}) {
    this.connection = new Http2Connection(address, options);
    this.maxReceiveBytes = options.maxReceiveMessageBytes ?? DEFAULT_MAX_RECEIVE_BYTES;
  }

  /** The terminal of a unary method's client chain: `path` is `/package.Service/Method`. */
  unary(path: string, serialize: (message: unknown) => Buffer, deserialize: (bytes: Buffer) => Message): Next<ClientRequest, ClientResponse> {
    return (req) => new Promise<ClientResponse>((resolve, reject) => new UnaryExchange(this.connection, path, serialize, deserialize, this.maxReceiveBytes, req, resolve, reject).start());
  }

  close(): void {
    this.connection.close();
  }
}

type Resolve = (response: ClientResponse) => void;
type Reject = (error: unknown) => void;

/** One unary call on the wire: request headers and message out, then headers, message and trailers back. */
class UnaryExchange {
  stream: ClientHttp2Stream | undefined;
  private timer: NodeJS.Timeout | undefined;
  private settled = false;
  private httpStatus = 0;
  private header: Metadata | undefined;
  private trailers: IncomingHttpHeaders | undefined;
  private chunks: Buffer[] = [];
  private received = 0;
  private streamError: Error | undefined;
  private headers: OutgoingHttpHeaders | undefined;
  private body: Buffer | undefined;
  private resent = false;

  constructor(
    private readonly connection: Http2Connection,
    private readonly path: string,
    private readonly serialize: (message: unknown) => Buffer,
    private readonly deserialize: (bytes: Buffer) => Message,
    private readonly maxReceiveBytes: number,
    private readonly req: ClientRequest,
    private readonly resolve: Resolve,
    private readonly reject: Reject,
  ) {}

  start(): void {
    const { req } = this;
    const now = Date.now();
    if (req.deadline <= now) return this.fail(GrpcStatus.DEADLINE_EXCEEDED, "Deadline exceeded");
    if (req.signal?.aborted) return this.fail(GrpcStatus.CANCELLED, "Cancelled on client");
    let body: Buffer;
    try {
      body = framed(this.serialize(req.message));
    } catch (error) {
      return this.fail(GrpcStatus.INTERNAL, `Request message serialization failure: ${(error as Error).message}`);
    }
    const headers: OutgoingHttpHeaders = req.header.toHttp2Headers();
    headers[":method"] = "POST";
    headers[":path"] = this.path;
    headers["content-type"] = "application/grpc";
    headers.te = "trailers";
    headers["user-agent"] = USER_AGENT;
    if (Number.isFinite(req.deadline)) {
      headers["grpc-timeout"] = grpcTimeout(req.deadline - now);
      this.timer = setTimeout(expire, req.deadline - now, this);
    }
    this.headers = headers;
    this.body = body;
    req.signal?.addEventListener("abort", this, { once: true });
    this.send();
  }

  /** Opens the stream and sends the request (again, after a refused stream). */
  private send(): void {
    let stream: ClientHttp2Stream;
    try {
      stream = this.connection.request(this.headers!);
    } catch (error) {
      return this.fail(GrpcStatus.UNAVAILABLE, `Connection failed: ${(error as Error).message}`);
    }
    this.stream = stream;
    // One set of listeners for every call (the stream points to its exchange): no closures per call.
    (stream as ExchangeStream)[EXCHANGE] = this;
    stream.on("response", onResponse);
    stream.on("data", onData);
    stream.on("trailers", onTrailers);
    stream.on("error", onError);
    stream.on("close", onClose);
    stream.end(this.body);
  }

  response(headers: IncomingHttpHeaders & IncomingHttpStatusHeader, flags: number): void {
    this.httpStatus = headers[":status"] ?? 0;
    if (flags & constants.NGHTTP2_FLAG_END_STREAM) {
      this.trailers = headers; // trailers-only: the status is in the headers
      return;
    }
    if (this.httpStatus !== 200 || this.settled) return; // the status decides at the end (a proxy's error page may follow)
    let header: Metadata;
    try {
      header = Metadata.fromHttp2Headers(headers);
    } catch (error) {
      return this.cancel(GrpcStatus.UNKNOWN, (error as Error).message);
    }
    this.header = header;
    this.req.onHeader?.(header);
  }

  data(chunk: Buffer): void {
    if (this.settled) return;
    this.received += chunk.length;
    if (this.received > this.maxReceiveBytes + 5) {
      return this.cancel(GrpcStatus.RESOURCE_EXHAUSTED, `Received message larger than max (${this.received - 5} vs ${this.maxReceiveBytes})`);
    }
    this.chunks.push(chunk);
  }

  gotTrailers(trailers: IncomingHttpHeaders): void {
    this.trailers = trailers;
  }

  gotError(error: Error): void {
    this.streamError = error;
  }

  expired(): void {
    this.timer = undefined;
    this.cancel(GrpcStatus.DEADLINE_EXCEEDED, "Deadline exceeded");
  }

  /** The caller's signal fired (this exchange is the abort listener). */
  handleEvent(): void {
    this.cancel(GrpcStatus.CANCELLED, "Cancelled on client");
  }

  /** The stream is over: the status is the trailers', else what ended it. */
  closed(stream: ClientHttp2Stream): void {
    if (this.settled || stream !== this.stream) return;
    if (this.trailers) return this.finish(this.trailers);
    if (this.httpStatus !== 0 && this.httpStatus !== 200) return this.failHttp(this.httpStatus);
    if (this.streamError && !isStreamReset(this.streamError)) return this.fail(GrpcStatus.UNAVAILABLE, `Connection dropped: ${this.streamError.message}`);
    const rstCode = stream.rstCode ?? constants.NGHTTP2_NO_ERROR;
    switch (rstCode) {
      case constants.NGHTTP2_REFUSED_STREAM:
        // The server did not process it (REFUSED_STREAM, or past its GOAWAY): safe to send once more,
        // on a new session, whatever the method (grpc-js does the same transparently).
        if (!this.resent && this.httpStatus === 0) {
          this.resent = true;
          this.streamError = undefined;
          return this.send();
        }
        return this.fail(GrpcStatus.UNAVAILABLE, "Stream refused by server");
      case constants.NGHTTP2_CANCEL:
        // Node reports a stream cut off by its session's end as CANCEL: that is a lost connection.
        return Http2Connection.connectionLost(stream)
          ? this.fail(GrpcStatus.UNAVAILABLE, "Connection dropped")
          : this.fail(GrpcStatus.CANCELLED, "Call cancelled");
      case constants.NGHTTP2_ENHANCE_YOUR_CALM:
        return this.fail(GrpcStatus.RESOURCE_EXHAUSTED, "Bandwidth exhausted or memory limit exceeded");
      case constants.NGHTTP2_INADEQUATE_SECURITY:
        return this.fail(GrpcStatus.PERMISSION_DENIED, "Protocol not secure enough");
      case constants.NGHTTP2_NO_ERROR:
        return Http2Connection.connectionLost(stream) && this.httpStatus === 0
          ? this.fail(GrpcStatus.UNAVAILABLE, "Connection dropped")
          : this.fail(GrpcStatus.INTERNAL, "Call ended without gRPC status");
      default:
        return this.fail(GrpcStatus.INTERNAL, `Received RST_STREAM with code ${rstCode}`);
    }
  }

  /** The call's outcome from its trailers (or the headers of a trailers-only response). */
  private finish(trailers: IncomingHttpHeaders): void {
    const rawStatus = trailers["grpc-status"];
    if (rawStatus === undefined) {
      if (this.httpStatus !== 200) return this.failHttp(this.httpStatus);
      return this.fail(GrpcStatus.UNKNOWN, "No status information received", statusMetadata(trailers));
    }
    const code = Number(rawStatus);
    if (code !== GrpcStatus.OK) return this.fail(code, grpcMessage(trailers["grpc-message"]), statusMetadata(trailers));
    let message: Buffer | undefined;
    try {
      message = this.message();
    } catch (error) {
      return this.fail(GrpcStatus.INTERNAL, (error as Error).message);
    }
    if (!message) return this.fail(GrpcStatus.UNIMPLEMENTED, "No message received");
    let decoded: Message;
    try {
      decoded = this.deserialize(message);
    } catch (error) {
      return this.fail(GrpcStatus.INTERNAL, `Response message parsing error: ${(error as Error).message}`);
    }
    this.settle();
    this.resolve({ stream: false, message: decoded, header: this.header });
  }

  /** The one length-prefixed message of the response body; undefined when there is none; throws when the body is not one message. */
  private message(): Buffer | undefined {
    if (this.received === 0) return undefined;
    const body = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.received);
    if (body.length < 5) throw new Error("Response body ended inside a message header");
    if (body[0] !== 0) throw new Error("Received a compressed message, but no compression was agreed");
    const length = body.readUInt32BE(1);
    if (body.length < 5 + length) throw new Error("Response body ended inside a message");
    if (body.length > 5 + length) throw new Error("Too many responses received");
    return body.subarray(5);
  }

  private failHttp(httpStatus: number): void {
    this.fail(httpStatusCode(httpStatus), `Received HTTP status code ${httpStatus}`);
  }

  /** Ends the call from this side: RST_STREAM CANCEL, and the caller gets `code`. */
  private cancel(code: number, details: string): void {
    if (this.settled) return;
    this.fail(code, details);
    const stream = this.stream;
    if (stream && !stream.destroyed) stream.close(constants.NGHTTP2_CANCEL);
  }

  private fail(code: number, details: string, metadata = new Metadata()): void {
    if (this.settled) return;
    this.settle();
    this.reject(wireFailure(code, details, metadata));
  }

  private settle(): void {
    this.settled = true;
    if (this.timer) clearTimeout(this.timer);
    this.req.signal?.removeEventListener("abort", this);
  }
}

const EXCHANGE = Symbol("umw.unaryExchange");
type ExchangeStream = ClientHttp2Stream & { [EXCHANGE]: UnaryExchange };

function onResponse(this: ExchangeStream, headers: IncomingHttpHeaders & IncomingHttpStatusHeader, flags: number): void {
  this[EXCHANGE].response(headers, flags);
}
function onData(this: ExchangeStream, chunk: Buffer): void {
  this[EXCHANGE].data(chunk);
}
function onTrailers(this: ExchangeStream, trailers: IncomingHttpHeaders): void {
  this[EXCHANGE].gotTrailers(trailers);
}
function onError(this: ExchangeStream, error: Error): void {
  const exchange = this[EXCHANGE];
  if (exchange.stream === this) exchange.gotError(error); // not a stream it has sent again since
}
function onClose(this: ExchangeStream): void {
  this[EXCHANGE].closed(this);
}
function expire(exchange: UnaryExchange): void {
  exchange.expired();
}

/** The 5-byte gRPC message prefix (uncompressed, length) and the message, in one buffer: one DATA frame. */
function framed(message: Buffer): Buffer {
  const body = Buffer.allocUnsafe(5 + message.length);
  body[0] = 0;
  body.writeUInt32BE(message.length, 1);
  message.copy(body, 5);
  return body;
}

/** `grpc-timeout`: at most 8 digits and a unit, rounded up so the server never sees less time than is left. */
export function grpcTimeout(ms: number): string {
  const millis = Math.max(1, Math.ceil(ms));
  if (millis < 1e8) return `${millis}m`;
  const seconds = Math.ceil(millis / 1000);
  if (seconds < 1e8) return `${seconds}S`;
  const minutes = Math.ceil(seconds / 60);
  if (minutes < 1e8) return `${minutes}M`;
  return `${Math.min(Math.ceil(minutes / 60), 99_999_999)}H`;
}

/** grpc-message is percent-encoded (UTF-8); a malformed one is kept as sent. */
function grpcMessage(raw: string | string[] | undefined): string {
  const value = Array.isArray(raw) ? raw.join(",") : (raw ?? "");
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/** The trailers as grpc-js hands them over with a status: binary values decoded, without grpc-status and grpc-message. */
function statusMetadata(trailers: IncomingHttpHeaders): Metadata {
  let metadata: Metadata;
  try {
    metadata = Metadata.fromHttp2Headers(trailers);
  } catch {
    return new Metadata();
  }
  metadata.remove("grpc-status");
  metadata.remove("grpc-message");
  return metadata;
}

/** The gRPC code of a response that is not a gRPC answer (HTTP status other than 200), per the gRPC spec's table. */
export function httpStatusCode(httpStatus: number): number {
  switch (httpStatus) {
    case 400:
      return GrpcStatus.INTERNAL;
    case 401:
      return GrpcStatus.UNAUTHENTICATED;
    case 403:
      return GrpcStatus.PERMISSION_DENIED;
    case 404:
      return GrpcStatus.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return GrpcStatus.UNAVAILABLE;
    default:
      return GrpcStatus.UNKNOWN;
  }
}

/** An error Node raises for a stream the peer reset (the rstCode says why), as opposed to a connection that failed. */
function isStreamReset(error: Error): boolean {
  return (error as { code?: string }).code === "ERR_HTTP2_STREAM_ERROR";
}
