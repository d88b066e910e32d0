import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { readFileSync } from "node:fs";
import { createSecureServer, createServer as createH2cServer, type Http2SecureServer, type Http2Server, type Http2ServerRequest, type Http2ServerResponse, type Http2Session } from "node:http2";
import type { AddressInfo } from "node:net";
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { Code, RpcError } from "../../runtime/errors.js";
import { connectAdapter } from "./connect-adapter.js";
import { connectRoutes } from "./connect-routes.js";
import { Cors } from "./cors.js";
import { typeRegistry, type EdgeContext } from "./edge-context.js";
import { statusJson } from "./edge-failure.js";
import { edgeHttpMetrics, UNMATCHED_ROUTE } from "./edge-metrics.js";
import { liveness, readiness } from "./health-endpoints.js";
import type { HttpRequest, HttpResponse } from "./http-exchange.js";
import { traceHttpRequest } from "./http-tracing.js";
import { resolveEdgeOptions, type EdgeOptions } from "./options.js";
import { connectContextValues } from "./rate-limit.js";
import { RestGateway } from "./rest-gateway.js";
import { Upstream } from "./upstream.js";

export interface RunningEdge {
  /** The bound HTTP/1.1 port (useful with port 0). */
  readonly port: number;
  /** `http://host:port` of the HTTP/1.1 listener. */
  readonly url: string;
  /** The bound h2c port, when one was asked for. */
  readonly h2cPort: number | undefined;
  /** The bound TLS port (ALPN h2, http/1.1), when one was asked for. */
  readonly tlsPort: number | undefined;
  /** Number of REST routes compiled from the annotations. */
  readonly routes: number;
  /** Stop accepting, end streams (UNAVAILABLE), let requests finish within the drain bound, close channels. */
  stop(): Promise<void>;
}

type AnyRequest = IncomingMessage | Http2ServerRequest;
type AnyResponse = ServerResponse | Http2ServerResponse;

/**
 * Starts the edge: one HTTP/1.1 server for REST (from the google.api.http annotations), Connect
 * and gRPC-web (connect-node), /healthz and /readyz; optionally the same on an h2c port for
 * clients that need HTTP/2 (gRPC), and on a TLS port (ALPN h2 and http/1.1: browsers over HTTP/2). Every call goes to its upstream over mTLS gRPC.
 */
export async function startEdge(input: EdgeOptions): Promise<RunningEdge> {
  const options = resolveEdgeOptions(input);
  const shutdown = new AbortController();
  const upstreams = new Map<string, Upstream>();
  for (const spec of options.upstreams) {
    upstreams.set(spec.service.typeName, new Upstream(spec.service, spec.address, spec.credentials ?? options.credentials, options.channelOptions, options.resilience, options.log, options.inProcess, options.upstreamClient));
  }
  const ctx: EdgeContext = {
    options,
    upstreams,
    registry: typeRegistry(options.upstreams.map((spec) => spec.service)),
    log: options.log,
    shutdown: shutdown.signal,
  };
  const rest = new RestGateway(ctx);
  const cors = new Cors(options.corsOrigins, options.forwardHeaders, options.passthroughHeaders);
  const connect = connectAdapter({
    routes: connectRoutes(ctx),
    readMaxBytes: options.maxBodyBytes,
    shutdownSignal: shutdown.signal,
    jsonOptions: { registry: ctx.registry },
    maxTimeoutMs: options.maxTimeoutMs,
    contextValues: options.rateLimit ? connectContextValues : undefined,
    log: options.log,
  });
  if (options.corsOrigins.includes("*")) options.log.warn("CORS allows any origin (`*`): every web page a user opens can call this edge with the user's network position");

  const metrics = edgeHttpMetrics();
  const routeOf = (method: string | undefined, path: string): string => {
    if (connect.has(path) || path === "/healthz" || path === "/readyz") return path;
    try {
      return rest.routes.match(method ?? "", path)?.binding.template.source ?? UNMATCHED_ROUTE;
    } catch {
      return UNMATCHED_ROUTE; // a path that does not decode (already answered 400)
    }
  };

  const routeOfUrl = (method: string | undefined, url: string): string => {
    const q = url.indexOf("?");
    return url.length > options.maxUrlBytes ? UNMATCHED_ROUTE : routeOf(method, q < 0 ? url : url.slice(0, q));
  };

  /** Every request, traced (http-tracing.ts) but for the health endpoints. */
  const handle = (req: AnyRequest, res: AnyResponse): void => {
    const url = req.url ?? "/";
    if (url === "/healthz" || url === "/readyz") return serve(req, res);
    traceHttpRequest(req, res, () => routeOfUrl(req.method, url), () => serve(req, res));
  };

  const serve = (req: AnyRequest, res: AnyResponse): void => {
    const request = req as HttpRequest;
    const response = res as unknown as HttpResponse;
    metrics.started(req.method, res, () => rest.matchedRoute(response) ?? routeOfUrl(req.method, req.url ?? "/"));
    try {
      const url = req.url ?? "/";
      if (url.length > options.maxUrlBytes) {
        return rest.fail(request, response, new RpcError(Code.INVALID_ARGUMENT, "URI_TOO_LONG", `the request target exceeds ${options.maxUrlBytes} bytes`, { limit: String(options.maxUrlBytes) }), undefined);
      }
      if (req.httpVersionMajor === 2) requestBound(req as Http2ServerRequest, res as Http2ServerResponse);
      const q = url.indexOf("?");
      const path = q < 0 ? url : url.slice(0, q);
      const origin = req.headers.origin;
      if (origin !== undefined && cors.apply(request, response, origin)) return;
      if (connect.has(path)) {
        connect.handle(request, response);
        return;
      }
      if (path === "/healthz") return liveness(response);
      const document = (req.method === "GET" || req.method === "HEAD") && Object.hasOwn(options.documents, path) ? options.documents[path] : undefined;
      if (document !== undefined) {
        const body = JSON.stringify(document);
        response.writeHead(200, { "content-type": "application/json", "cache-control": "public, max-age=300", "content-length": Buffer.byteLength(body) });
        response.end(req.method === "HEAD" ? undefined : body);
        return;
      }
      if (path === "/readyz") {
        readiness(ctx, response).catch((error: unknown) => internalError(error));
        return;
      }
      rest.handle(request, response, path, q < 0 ? undefined : url.slice(q + 1));
    } catch (error) {
      internalError(error);
    }

    function internalError(error: unknown) {
      options.log.error({ err: error, url: req.url }, "edge request failed");
      rest.fail(request, response, new RpcError(Code.INTERNAL, "INTERNAL", "internal error"), undefined);
    }
  };

  /**
   * h2c has no request timeout of its own: a stream whose request (headers and body) has not
   * arrived within the bound is answered 408 (or reset once an answer has started).
   */
  const requestBound = (req: Http2ServerRequest, res: Http2ServerResponse) => {
    if (req.readableEnded || req.complete) return;
    const timer = setTimeout(() => {
      if (req.complete || res.writableEnded) return;
      if (res.headersSent) res.stream.close(0x8 /* CANCEL */);
      else rest.fail(req as unknown as HttpRequest, res as unknown as HttpResponse, requestTimeout(), undefined);
      req.resume();
    }, options.requestTimeoutMs);
    const clear = () => clearTimeout(timer);
    req.once("end", clear);
    res.once("close", clear);
  };

  const server: Server = createServer(
    {
      headersTimeout: options.headersTimeoutMs,
      requestTimeout: options.requestTimeoutMs,
      keepAliveTimeout: options.idleTimeoutMs,
      // How often Node checks the two bounds above: a fraction of the smaller one.
      connectionsCheckingInterval: Math.max(10, Math.min(options.headersTimeoutMs, options.requestTimeoutMs) / 4),
    },
    handle,
  );
  server.on("clientError", (error: NodeJS.ErrnoException & { rawPacket?: Buffer }, socket: Socket) => {
    if (!socket.writable || (error.code !== undefined && ["ECONNRESET", "EPIPE"].includes(error.code))) {
      socket.destroy();
      return;
    }
    const [status, failure] = clientFailure(error, options.maxUrlBytes);
    const body = statusJson(failure.toStatus(), ctx.registry);
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_TEXT[status]}\r\nconnection: close\r\ncontent-type: application/json\r\ncache-control: no-store\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  });
  const port = await listen(server, options.port, options.host);

  let h2c: Http2Server | undefined;
  const sessions = new Set<Http2Session>();
  let h2cPort: number | undefined;
  if (options.h2cPort !== undefined) {
    h2c = createH2cServer({}, handle);
    // No frame either way for this long (a preface-only connection included): the session is destroyed.
    h2c.setTimeout(options.sessionTimeoutMs);
    h2c.on("session", (session: Http2Session) => {
      sessions.add(session);
      session.once("close", () => sessions.delete(session));
    });
    h2cPort = await listen(h2c, options.h2cPort, options.host);
  }
  let tlsServer: Http2SecureServer | undefined;
  let tlsPort: number | undefined;
  const tlsSockets = new Set<TLSSocket>();
  if (options.tls !== undefined) {
    const { certFile, keyFile } = options.tls;
    let pem: { cert: Buffer; key: Buffer };
    try {
      pem = { cert: readFileSync(certFile), key: readFileSync(keyFile) };
    } catch (error) {
      server.close();
      h2c?.close();
      throw new Error(`edge: cannot read the TLS certificate or key (${certFile}, ${keyFile}): ${(error as Error).message}`);
    }
    // ALPN h2 for clients that offer it (every browser), http/1.1 for the others (Node offers both with allowHTTP1).
    tlsServer = createSecureServer({ ...pem, allowHTTP1: true }, handle);
    tlsServer.setTimeout(options.sessionTimeoutMs);
    tlsServer.on("session", (session: Http2Session) => {
      sessions.add(session);
      session.once("close", () => sessions.delete(session));
    });
    tlsServer.on("secureConnection", (socket: TLSSocket) => {
      tlsSockets.add(socket);
      socket.once("close", () => tlsSockets.delete(socket));
    });
    tlsPort = await listen(tlsServer, options.tls.port, options.host);
  }
  options.log.info({ port, h2cPort, tlsPort, routes: rest.routes.size, upstreams: options.upstreams.map((spec) => `${spec.service.typeName}@${spec.address}`) }, "edge listening");

  let stopped: Promise<void> | undefined;
  const stop = async () => {
    shutdown.abort();
    const closed = Promise.all([
      new Promise<void>((resolve) => server.close(() => resolve())),
      h2c ? new Promise<void>((resolve) => h2c.close(() => resolve())) : undefined,
      tlsServer ? new Promise<void>((resolve) => tlsServer.close(() => resolve())) : undefined,
    ]);
    server.closeIdleConnections();
    for (const session of sessions) session.close();
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), options.drainTimeoutMs)));
    if ((await Promise.race([closed, bound])) === "timeout") {
      options.log.warn({ boundMs: options.drainTimeoutMs }, "edge drain bound reached; closing connections");
      server.closeAllConnections();
      for (const session of sessions) session.destroy();
      for (const socket of tlsSockets) socket.destroy();
      await closed;
    }
    clearTimeout(timer);
    for (const upstream of upstreams.values()) upstream.close();
  };
  return {
    port,
    url: `http://${options.host.includes(":") ? `[${options.host}]` : options.host}:${port}`,
    h2cPort,
    tlsPort,
    routes: rest.routes.size,
    stop: () => (stopped ??= stop()),
  };
}

function listen(server: Server | Http2Server | Http2SecureServer, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error) => reject(new Error(`edge: cannot listen on ${host}:${port}: ${error.message}`));
    server.once("error", onError);
    server.listen(port, host, () => {
      server.off("error", onError);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

const STATUS_TEXT: Record<number, string> = { 400: "Bad Request", 408: "Request Timeout", 414: "URI Too Long", 431: "Request Header Fields Too Large" };

/** What a request node:http could not parse, or did not receive in time, is answered with. */
function clientFailure(error: NodeJS.ErrnoException & { rawPacket?: Buffer }, maxUrlBytes: number): [number, RpcError] {
  switch (error.code) {
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return [408, requestTimeout()];
    case "HPE_HEADER_OVERFLOW": {
      // The request line alone overflowing means the URL is what is too long.
      const packet = error.rawPacket;
      const lineEnd = packet ? packet.indexOf("\r\n") : -1;
      if (packet && (lineEnd < 0 || lineEnd > maxUrlBytes)) {
        return [414, new RpcError(Code.INVALID_ARGUMENT, "URI_TOO_LONG", `the request target exceeds ${maxUrlBytes} bytes`, { limit: String(maxUrlBytes) })];
      }
      return [431, new RpcError(Code.INVALID_ARGUMENT, "HEADERS_TOO_LARGE", "the request headers are too large")];
    }
    default:
      return [400, new RpcError(Code.INVALID_ARGUMENT, "MALFORMED_REQUEST", "the request is not valid HTTP/1.1")];
  }
}

function requestTimeout(): RpcError {
  return new RpcError(Code.DEADLINE_EXCEEDED, "REQUEST_TIMEOUT", "the request did not arrive in time");
}
