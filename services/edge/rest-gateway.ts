import { once, type EventEmitter } from "node:events";
import type { OutgoingHttpHeaders } from "node:http";
import { toJson, toJsonString, type Message } from "@bufbuild/protobuf";
import type { Metadata } from "@grpc/grpc-js";
import { Code, RpcError } from "../../runtime/errors.js";
import type { EdgeContext } from "./edge-context.js";
import { edgeFailureOf, statusJson, upstreamFailure } from "./edge-failure.js";
import { entityTag, noneMatch } from "./entity-tags.js";
import type { Principal } from "../../runtime/principal.js";
import { authenticate, checkTenant } from "./authenticator.js";
import { metadataFromIncoming, REQUEST_ID, requestIdOf, setPrincipal } from "./forwarded-headers.js";
import type { HttpRequest, HttpResponse } from "./http-exchange.js";
import { readHttpBindings, type HttpBinding } from "./http-rules.js";
import { httpStatusOfFailure } from "./http-status.js";
import { PathDecodeError } from "./path-template.js";
import { admit, isFreshRead, pathTenant } from "./rate-limit.js";
import { BoundRequests } from "./request-binding.js";
import { ClientGoneError, readBody } from "./request-body.js";
import { compressBody, COMPRESSION_MIN_BYTES } from "./response-compression.js";
import { RouteTable, type RouteMatch } from "./route-table.js";
import type { Upstream } from "./upstream.js";

const JSON_TYPE = "application/json";
const NDJSON_TYPE = "application/x-ndjson";
const SSE_TYPE = "text/event-stream";
/** Upstream response metadata with a meaning at the edge, not passed on as such. */
const UPSTREAM_CACHE_STATUS = "umw-cache-status";
const UPSTREAM_HTTP_STATUS = "x-http-status";

/**
 * REST transcoding driven by the google.api.http annotations: route, bind the request, call the
 * internal service over gRPC, answer JSON (or NDJSON for server-streaming methods) with ETag,
 * Cache-Status and the status the upstream asked for; failures as google.rpc.Status JSON.
 */
export class RestGateway {
  readonly routes: RouteTable;
  /** [upstream metadata key, HTTP header name] of the metadata passed on. */
  private readonly passthrough: readonly (readonly [string, string])[];
  /** Request messages of bodiless calls, bound once per path and query. */
  private readonly bound: BoundRequests;
  /** The route template each routed request matched, for its metrics (no second match when it ends). */
  private readonly matchedRoutes = new WeakMap<HttpResponse, string>();
  /** Rendered JSON by response message (messages are never modified once received). */
  private readonly rendered = new WeakMap<Message, { readonly binding: HttpBinding; readonly json: string }>();

  constructor(private readonly ctx: EdgeContext) {
    const services = [...ctx.upstreams.values()].map((upstream) => upstream.service);
    this.routes = new RouteTable(readHttpBindings(services, new Set(ctx.options.versionedTypes)));
    this.bound = new BoundRequests(ctx.registry, ctx.options.payloadLimits);
    this.passthrough = ctx.options.passthroughHeaders.map((name) => [name, name === UPSTREAM_CACHE_STATUS ? "cache-status" : name] as const);
  }

  /** The route template the request of `res` matched, once handle() has routed it. */
  matchedRoute(res: HttpResponse): string | undefined {
    return this.matchedRoutes.get(res);
  }

  handle(req: HttpRequest, res: HttpResponse, path: string, query: string | undefined): void {
    const method = req.method ?? "GET";
    let match: RouteMatch | undefined;
    try {
      match = this.routes.match(method, path);
    } catch (error) {
      if (!(error instanceof PathDecodeError)) throw error;
      return this.fail(req, res, new RpcError(Code.INVALID_ARGUMENT, "INVALID_PATH", error.message), undefined);
    }
    if (!match) return this.unrouted(req, res, method, path);
    this.matchedRoutes.set(res, match.binding.template.source);
    const requestId = requestIdOf(req.headers[REQUEST_ID]);
    const routed = match;
    authenticate(this.ctx.options.auth, req.headers.authorization).then(
      (principal) => this.guard(req, res, requestId, () => this.authenticated(req, res, routed, query, requestId, principal)),
      (error: unknown) => {
        req.resume();
        this.fail(req, res, edgeFailureOf(error), requestId);
      },
    );
  }

  private authenticated(req: HttpRequest, res: HttpResponse, match: RouteMatch, query: string | undefined, requestId: string, principal: Principal | undefined): void {
    const { binding } = match;
    const withBody = binding.body !== undefined && hasBody(req);
    const type = req.headers["content-type"];
    // JSON only: a text/plain or form body is what any web page can send without a CORS preflight.
    if (withBody && (type === undefined || !isJson(type))) {
      return this.fail(
        req,
        res,
        new RpcError(Code.INVALID_ARGUMENT, "UNSUPPORTED_MEDIA_TYPE", type === undefined ? "a request body needs content-type application/json" : `content-type ${type} is not JSON`, { accept: JSON_TYPE }),
        requestId,
      );
    }
    const rateLimit = this.ctx.options.rateLimit;
    if (!rateLimit) return this.proceed(req, res, match, query, withBody, requestId, principal);
    const route = `${binding.method.parent.typeName}/${binding.method.name}`;
    admit(rateLimit, req, route, pathTenant(match), isFreshRead(req.method ?? "GET", query), principal).then(
      (admission) =>
        this.guard(req, res, requestId, () => {
          if (admission.refusal) return this.fail(req, res, admission.refusal, requestId);
          for (const [name, value] of Object.entries(admission.headers)) res.setHeader(name, value);
          this.proceed(req, res, match, query, withBody, requestId, principal);
        }),
      (error: unknown) => this.guard(req, res, requestId, () => this.fail(req, res, edgeFailureOf(error), requestId)),
    );
  }

  private proceed(req: HttpRequest, res: HttpResponse, match: RouteMatch, query: string | undefined, withBody: boolean, requestId: string, principal: Principal | undefined): void {
    if (!withBody) return this.call(req, res, match, query, undefined, requestId, principal);
    readBody(req, this.ctx.options.maxBodyBytes).then(
      (body) => this.guard(req, res, requestId, () => this.call(req, res, match, query, body, requestId, principal)),
      (error: unknown) => {
        if (!(error instanceof ClientGoneError)) this.fail(req, res, edgeFailureOf(error), requestId);
      },
    );
  }

  private unrouted(req: HttpRequest, res: HttpResponse, method: string, path: string): void {
    const allowed = this.routes.allowed(path);
    if (allowed.length === 0) {
      return this.fail(req, res, new RpcError(Code.NOT_FOUND, "ROUTE_NOT_FOUND", `no route for ${method} ${path}`, { method, path }), undefined);
    }
    const allow = allowed.join(", ");
    if (method === "OPTIONS") {
      res.writeHead(204, { allow, "content-length": 0 });
      res.end();
      return;
    }
    this.fail(
      req,
      res,
      new RpcError(Code.UNIMPLEMENTED, "METHOD_NOT_ALLOWED", `${method} is not allowed on ${path}; allowed: ${allow}`, { method, allow }, { allow }),
      undefined,
    );
  }

  private call(req: HttpRequest, res: HttpResponse, match: RouteMatch, query: string | undefined, body: Buffer | undefined, requestId: string, principal: Principal | undefined): void {
    if (res.destroyed) return;
    const { binding } = match;
    const upstream = this.ctx.upstreams.get(binding.method.parent.typeName)!;
    let request: Message;
    let metadata: Metadata;
    try {
      request = this.bound.bind(binding, match.values, query, body);
      checkTenant(principal, (request as unknown as { tenant?: unknown }).tenant);
      metadata = metadataFromIncoming(req.headers, this.ctx.options.forwardHeaders, requestId);
      setPrincipal(metadata, principal);
    } catch (error) {
      return this.fail(req, res, edgeFailureOf(error), requestId);
    }
    if (binding.method.methodKind === "server_streaming") return this.stream(req, res, binding, upstream, request, metadata, requestId);
    let done = false;
    const cancel = new AbortController();
    const { passthroughHeaders } = this.ctx.options;
    upstream.client.unary(binding.method, request, { headers: metadata, deadline: Date.now() + this.ctx.options.timeoutMs, signal: cancel.signal }).then(
      (response) => {
        done = true;
        this.guard(req, res, requestId, () => this.respond(req, res, binding, response.message, response.header, requestId));
      },
      (error: unknown) => {
        done = true;
        this.guard(req, res, requestId, () => this.fail(req, res, upstreamFailure(error, upstream.service.typeName, passthroughHeaders), requestId));
      },
    );
    // The client went away: nobody waits for the answer.
    res.on("close", () => {
      if (!done) cancel.abort();
    });
  }

  private respond(req: HttpRequest, res: HttpResponse, binding: HttpBinding, response: Message, upstreamHeaders: Metadata | undefined, requestId: string): void {
    if (res.destroyed) return;
    const read = req.method === "GET" || req.method === "HEAD";
    const headers: OutgoingHttpHeaders = {
      "content-type": JSON_TYPE,
      "cache-control": read ? this.ctx.options.cacheControl : "no-store",
      [REQUEST_ID]: requestId,
    };
    const etag = binding.etag ? entityTag(response, binding.etag) : undefined;
    if (etag) headers.etag = etag;
    let status = 200;
    if (upstreamHeaders) {
      this.passOn(upstreamHeaders, headers);
      const asked = upstreamHeaders.get(UPSTREAM_HTTP_STATUS)[0];
      if (asked !== undefined) {
        const code = Number(asked);
        if (Number.isInteger(code) && code >= 200 && code <= 299) status = code;
      }
    }
    const ifNoneMatch = read ? req.headers["if-none-match"] : undefined;
    if (ifNoneMatch !== undefined && noneMatch(ifNoneMatch, etag)) {
      delete headers["content-type"];
      res.writeHead(304, headers);
      res.end();
      return;
    }
    let body: string;
    try {
      body = this.responseJson(binding, response);
    } catch (error) {
      this.ctx.log.error({ err: error, method: binding.method.name }, "cannot encode the response as JSON");
      return this.fail(req, res, new RpcError(Code.INTERNAL, "INTERNAL", "the response cannot be encoded as JSON"), requestId);
    }
    const compressed = compressBody(body, req.headers["accept-encoding"]);
    if (Buffer.byteLength(body) >= COMPRESSION_MIN_BYTES) headers.vary = "Accept-Encoding";
    if (compressed) {
      headers["content-encoding"] = compressed.coding;
      headers["content-length"] = compressed.bytes.length;
      res.writeHead(status, headers);
      res.end(compressed.bytes);
      return;
    }
    headers["content-length"] = Buffer.byteLength(body);
    res.writeHead(status, headers);
    res.end(body);
  }

  /**
   * JSON of a response, rendered once per (binding, message): the upstream hands out one shared
   * message per distinct response bytes (upstream.ts), so a cached entity is rendered once. A
   * body field's message is the key when the binding renders one: in process (no bytes to share)
   * each response is new, but the entity in it is the QueryService L1's, one per version.
   */
  private responseJson(binding: HttpBinding, response: Message): string {
    const field = binding.responseBody;
    const body = field?.fieldKind === "message" && !field.oneof ? (response as unknown as Record<string, Message | undefined>)[field.localName] : undefined;
    const subject = body ?? response;
    const known = this.rendered.get(subject);
    if (known?.binding === binding) return known.json;
    const json = this.renderJson(binding, response);
    this.rendered.set(subject, { binding, json });
    return json;
  }

  private renderJson(binding: HttpBinding, response: Message): string {
    const options = { registry: this.ctx.registry };
    const field = binding.responseBody;
    if (!field) return toJsonString(binding.method.output, response, options);
    const value = (response as unknown as Record<string, unknown>)[field.localName];
    if (field.fieldKind === "message" && !field.oneof) return value ? toJsonString(field.message, value as Message, options) : "{}";
    const json = toJson(binding.method.output, response, { ...options, alwaysEmitImplicit: true }) as Record<string, unknown>;
    return JSON.stringify(json[field.jsonName] ?? null);
  }

  /** Server-streaming over REST: NDJSON, one message a line, written as it arrives (or server-sent events on `Accept: text/event-stream`). */
  private stream(req: HttpRequest, res: HttpResponse, binding: HttpBinding, upstream: Upstream, request: Message, metadata: Metadata, requestId: string): void {
    const { streamTimeoutMs, passthroughHeaders } = this.ctx.options;
    const jsonOptions = { registry: this.ctx.registry };
    const cancel = new AbortController();
    let started = false;
    let finished = false;
    // Server-sent events when the client asks for them: one `data:` event a message, an `error` event for a failure.
    const sse = (req.headers.accept ?? "").toLowerCase().includes(SSE_TYPE);
    const frame = (json: string, event?: string) => (sse ? `${event ? `event: ${event}\n` : ""}data: ${json}\n\n` : `${json}\n`);

    /** HTTP headers go out with the upstream's headers, or the first message, whichever is first. */
    const start = (upstreamHeaders?: Metadata) => {
      // Already answered (a failure before the first message, e.g. at shutdown): upstream headers arriving later change nothing.
      if (started || res.headersSent || res.destroyed) return;
      started = true;
      const headers: OutgoingHttpHeaders = { "content-type": sse ? SSE_TYPE : NDJSON_TYPE, "cache-control": "no-store", [REQUEST_ID]: requestId, "x-accel-buffering": "no" };
      if (upstreamHeaders) this.passOn(upstreamHeaders, headers);
      res.writeHead(200, headers);
      (res as { flushHeaders?: () => void }).flushHeaders?.();
    };
    /** Ends the answer: a plain error before any message, a last `{"error": Status}` line after. */
    const finish = (failure: RpcError | undefined) => {
      if (finished) return;
      finished = true;
      this.ctx.shutdown.removeEventListener("abort", onShutdown);
      cancel.abort();
      if (res.destroyed) return;
      if (!failure) {
        start();
        res.end();
      } else if (!started) {
        this.fail(req, res, failure, requestId);
      } else {
        const error = statusJson(failure.toStatus(), this.ctx.registry);
        res.end(sse ? frame(error, "error") : frame(`{"error":${error}}`));
      }
    };
    const onShutdown = () => finish(new RpcError(Code.UNAVAILABLE, "SHUTTING_DOWN", "the edge is shutting down; reconnect"));
    /** A throw of the edge's own (not an upstream failure): this request ends INTERNAL. */
    const broken = (error: unknown) => {
      this.ctx.log.error({ err: error, method: binding.method.name }, "NDJSON stream failed");
      finish(new RpcError(Code.INTERNAL, "INTERNAL", "internal error"));
    };

    const messages = upstream.client.serverStream(binding.method, request, {
      headers: metadata,
      deadline: streamTimeoutMs > 0 ? Date.now() + streamTimeoutMs : Infinity,
      signal: cancel.signal,
      // grpc-js calls this from its own stack: a throw there must end this request, not the process.
      onHeaders: (headers) => {
        try {
          start(headers);
        } catch (error) {
          broken(error);
        }
      },
    });
    const pump = async () => {
      for await (const message of messages) {
        if (finished) return;
        let line: string;
        try {
          line = frame(toJsonString(binding.method.output, message, jsonOptions));
          start();
        } catch (error) {
          return broken(error);
        }
        // The upstream is read no faster than the client takes the lines.
        if (!res.write(line)) await once(res as unknown as EventEmitter, "drain", { signal: cancel.signal });
      }
      finish(undefined);
    };
    pump().catch((error: unknown) => finish(upstreamFailure(error, upstream.service.typeName, passthroughHeaders)));
    res.on("close", () => {
      if (finished) return;
      finished = true;
      this.ctx.shutdown.removeEventListener("abort", onShutdown);
      cancel.abort();
    });
    if (this.ctx.shutdown.aborted) onShutdown();
    else this.ctx.shutdown.addEventListener("abort", onShutdown, { once: true });
  }

  /**
   * Runs a step that executes outside the request's own stack (a grpc-js callback or event, a body
   * promise): whatever it throws becomes a 500 for this request, never an uncaught exception.
   */
  private guard(req: HttpRequest, res: HttpResponse, requestId: string, step: () => void): void {
    try {
      step();
    } catch (error) {
      this.ctx.log.error({ err: error, url: req.url }, "edge request failed");
      this.fail(req, res, new RpcError(Code.INTERNAL, "INTERNAL", "internal error"), requestId);
    }
  }

  /** Copies the passed-on upstream metadata to HTTP headers. */
  private passOn(metadata: Metadata, headers: OutgoingHttpHeaders): void {
    for (const [key, header] of this.passthrough) {
      const values = metadata.get(key);
      if (values.length > 0) headers[header] = values.length === 1 ? String(values[0]) : values.map(String).join(", ");
    }
  }

  /** Answers a failure as google.rpc.Status JSON with the mapped HTTP status. */
  fail(req: HttpRequest, res: HttpResponse, failure: RpcError, requestId: string | undefined): void {
    if (res.destroyed || res.writableEnded) return;
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (failure.code === Code.INTERNAL || failure.code === Code.UNKNOWN || failure.code === Code.DATA_LOSS) {
      this.ctx.log.warn({ code: Code[failure.code], message: failure.message, path: req.url }, "request failed");
    }
    const body = statusJson(failure.toStatus(), this.ctx.registry);
    const headers: OutgoingHttpHeaders = {
      "content-type": JSON_TYPE,
      "cache-control": "no-store",
      [REQUEST_ID]: requestId ?? requestIdOf(req.headers[REQUEST_ID]),
      "content-length": Buffer.byteLength(body),
    };
    for (const [key, value] of Object.entries(failure.headers)) headers[key === UPSTREAM_CACHE_STATUS ? "cache-status" : key] = value;
    try {
      res.writeHead(httpStatusOfFailure(failure, isConditional(req)), headers);
      res.end(body);
    } catch (error) {
      this.ctx.log.error({ err: error, url: req.url }, "cannot send the error answer");
      res.destroy();
    }
  }
}

function hasBody(req: HttpRequest): boolean {
  const length = req.headers["content-length"];
  if (length !== undefined) return length !== "0";
  if (req.headers["transfer-encoding"] !== undefined) return true;
  // HTTP/2 needs no length: a body may follow any method that carries one.
  return (req as { httpVersionMajor?: number }).httpVersionMajor === 2 && req.method !== "GET" && req.method !== "HEAD";
}

/** `application/json` or a `+json` type, with any parameters (`; charset=utf-8`). */
function isJson(type: string): boolean {
  const essence = type.split(";", 1)[0]!.trim().toLowerCase();
  return essence === JSON_TYPE || (essence.startsWith("application/") && essence.endsWith("+json"));
}

function isConditional(req: HttpRequest): boolean {
  const { headers } = req;
  return headers["if-match"] !== undefined || headers["if-none-match"] !== undefined || headers["if-unmodified-since"] !== undefined;
}
