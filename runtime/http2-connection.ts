import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type OutgoingHttpHeaders } from "node:http2";
import type { ClientTls } from "./tls.js";

export interface Http2ConnectionOptions {
  /** mTLS material (runtime/tls.ts clientTlsOf); undefined: cleartext HTTP/2 (h2c). */
  readonly tls?: ClientTls;
  /** Ping the server this often while connected (grpc-js `grpc.keepalive_time_ms`); undefined: no pings. */
  readonly keepaliveTimeMs?: number;
  /** A ping unanswered for this long closes the connection (grpc-js `grpc.keepalive_timeout_ms`; default 20 s). */
  readonly keepaliveTimeoutMs?: number;
}

/**
 * One HTTP/2 session to one upstream, for the lean unary transport: made on the first call (lazy),
 * shared by every call, and replaced on the next call once it is gone (closed, GOAWAY, error,
 * unanswered ping). A session that received GOAWAY takes no new streams but lets the ones in
 * flight finish. The session keeps the process alive only while calls are in flight.
 */
export class Http2Connection {
  private session: ClientHttp2Session | undefined;
  private readonly authority: string;
  private closed = false;

  constructor(
    readonly address: string,
    private readonly options: Http2ConnectionOptions = {},
  ) {
    this.authority = `${options.tls ? "https" : "http"}://${address}`;
  }

  /**
   * A new stream with these request headers on the current session (connecting if there is none).
   * Throws what Node throws when no stream can be opened (e.g. the session just closed): the caller
   * reports it as the connection failure it is.
   */
  request(headers: OutgoingHttpHeaders): ClientHttp2Stream {
    if (this.closed) throw Object.assign(new Error("the connection was closed by its owner"), { code: "ERR_HTTP2_INVALID_SESSION" });
    let session = this.current();
    let stream: ClientHttp2Stream;
    try {
      stream = session.request(headers, { endStream: false });
    } catch {
      // The session went away between our last look and now (e.g. out of stream ids): one more try on a fresh one.
      this.forget(session);
      session = this.current();
      stream = session.request(headers, { endStream: false });
    }
    const counted = session as SessionWithCalls;
    if (counted.umwCalls++ === 0) session.ref();
    (stream as StreamOfSession)[SESSION] = counted;
    stream.on("close", streamClosed);
    return stream;
  }

  /** Whether `stream`'s session has gone (closed, destroyed): a stream it cut off without a status lost its connection. */
  static connectionLost(stream: ClientHttp2Stream): boolean {
    const session = stream.session;
    return !session || session.destroyed || session.closed;
  }

  close(): void {
    this.closed = true;
    const session = this.session;
    this.session = undefined;
    session?.close();
  }

  private current(): ClientHttp2Session {
    const existing = this.session;
    if (existing && !existing.closed && !existing.destroyed) return existing;
    const session = this.open();
    this.session = session;
    return session;
  }

  private open(): ClientHttp2Session {
    const { tls } = this.options;
    const session = connect(
      this.authority,
      // Node sends the host as SNI unless it is an IP address, as grpc-js does.
      // (checkServerIdentity must be a function when present: without one, Node's standard host name check applies.)
      tls ? { ca: tls.ca, key: tls.key, cert: tls.cert, ...(tls.checkServerIdentity && { checkServerIdentity: tls.checkServerIdentity }) } : {},
    ) as SessionWithCalls;
    session.umwCalls = 0;
    session.unref();
    const forget = () => this.forget(session);
    // No listener would make a connection error an uncaught exception; the calls on it see it themselves.
    session.on("error", forget);
    // GOAWAY: no new streams here; the ones in flight finish, then the session closes.
    session.on("goaway", () => {
      forget();
      if (!session.closed) session.close();
    });
    session.on("close", forget);
    if (this.options.keepaliveTimeMs !== undefined) this.keepAlive(session, this.options.keepaliveTimeMs, this.options.keepaliveTimeoutMs ?? 20_000);
    return session;
  }

  private forget(session: ClientHttp2Session): void {
    if (this.session === session) this.session = undefined;
  }

  /** Pings every `intervalMs` once connected; one unanswered for `timeoutMs` destroys the session (its calls fail UNAVAILABLE). */
  private keepAlive(session: ClientHttp2Session, intervalMs: number, timeoutMs: number): void {
    const interval = setInterval(() => {
      if (session.destroyed || session.closed) return;
      const unanswered = setTimeout(() => session.destroy(new Error("keepalive ping unanswered"), constants.NGHTTP2_PROTOCOL_ERROR), timeoutMs);
      unanswered.unref();
      try {
        session.ping((error) => {
          clearTimeout(unanswered);
          if (error && !session.destroyed) session.destroy(error);
        });
      } catch {
        clearTimeout(unanswered); // not connected yet, or too many pings in flight
      }
    }, intervalMs);
    interval.unref();
    session.once("close", () => clearInterval(interval));
  }
}

type SessionWithCalls = ClientHttp2Session & { umwCalls: number };

const SESSION = Symbol("umw.session");
type StreamOfSession = ClientHttp2Stream & { [SESSION]: SessionWithCalls };

/** One listener for every stream (no closure per call): the last call of a session lets the process exit. */
function streamClosed(this: StreamOfSession): void {
  const session = this[SESSION];
  if (--session.umwCalls === 0 && !session.destroyed) session.unref();
}
