import { context, isSpanContextValid, propagation, SpanKind, SpanStatusCode, trace, type Context, type Span, type SpanContext, type TextMapGetter } from "@opentelemetry/api";
import { Code, toRpcError } from "./errors.js";
import { statusCodeOf, whenCallEnds, type ClientInterceptor, type ServerInterceptor } from "./interceptor.js";
import { acceptedRoot, unsampledTraceparent, type NewTraceSampler } from "./new-trace-sampling.js";

/**
 * Spans of calls, made where umw already has one place per call (the server and client interceptor
 * chains, the edge's HTTP entry) instead of by patching grpc-js and node:http for every call:
 *
 * - a call whose `traceparent` says "not sampled" costs one look at that header: no span object,
 *   no context switch; the header travels on as it came (metadata forwarding, the outbox row);
 * - a call without (a valid) `traceparent` is a new trace: the new-trace sampler decides
 *   (runtime/new-trace-sampling.ts, before any SDK work); when it says no, the call gets an unsampled
 *   `traceparent` of its own to pass on, so the services behind it make the same decision instead
 *   of each rolling the dice again;
 * - a sampled call gets its span, the child of the caller's, and runs inside it (the Postgres and
 *   Redis spans, the outbox row's trace context and the log lines' `trace_id` come from there).
 *
 * Off (no SDK started, see runtime/telemetry.ts) the interceptors only pass the call on.
 */

const tracer = trace.getTracer("umw.rpc");
let enabled = false;
let newTraces: NewTraceSampler | undefined;

/**
 * Turns call tracing on or off for this process; runtime/telemetry.ts turns it on with the SDK and
 * the SDK's root sampler, which then decides new traces here before the SDK is asked (see
 * runtime/new-trace-sampling.ts). Without one, the SDK's sampler decides them.
 */
export function setCallTracing(on: boolean, newTraceSampler?: NewTraceSampler): void {
  enabled = on;
  newTraces = on ? newTraceSampler : undefined;
}

type Headers = Readonly<Record<string, string | string[] | undefined>>;

const headerGetter: TextMapGetter<Headers> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => carrier[key],
};

/** What a `traceparent` says (W3C Trace Context: version-traceid-parentid-flags), or undefined when it is absent or malformed. */
export function traceparentSampling(value: string | string[] | undefined): "sampled" | "unsampled" | undefined {
  const traceparent = Array.isArray(value) ? value[0] : value;
  if (traceparent === undefined || traceparent.length < 55 || !TRACEPARENT.test(traceparent)) return undefined;
  return (parseInt(traceparent.slice(53, 55), 16) & 1) === 1 ? "sampled" : "unsampled";
}

const TRACEPARENT = /^(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}(?:$|-)/;

/** The `traceparent` of a span context. */
export function traceparentOf(spanContext: SpanContext): string {
  return `00-${spanContext.traceId}-${spanContext.spanId}-0${spanContext.traceFlags & 1}`;
}

/** How an incoming call is traced: see `enterTrace`. */
export type TraceEntry =
  /** Sampled: run the call inside `context`, end `span` when it ends. */
  | { readonly span: Span; readonly context: Context; readonly traceparent?: undefined }
  /** A new trace, not sampled: pass this `traceparent` on instead of none. */
  | { readonly span?: undefined; readonly traceparent: string }
  /** Nothing to do: tracing is off, or the caller's `traceparent` says not sampled (it travels on as is). */
  | undefined;

/**
 * The tracing of an incoming call (gRPC metadata or HTTP headers), whose SERVER span would be
 * `name()`: nothing for an unsampled parent, else a span from the SDK's sampler (parent-based,
 * the root at UMW_TRACE_SAMPLE_RATIO; it sees neither name nor attributes, which are given to a
 * recording span only: the caller sets the attributes).
 */
export function enterTrace(headers: Headers, name: () => string): TraceEntry {
  if (!enabled) return undefined;
  const sampling = traceparentSampling(headers.traceparent);
  if (sampling === "unsampled") return undefined;
  // The active context without its span (umw's own values in it stay: runtime/async-context.ts).
  const base = trace.deleteSpan(context.active());
  const parent = sampling === "sampled" ? propagation.extract(base, headers, headerGetter) : base;
  // What the SDK's sampler sees: a new trace accepted here is marked so, and not flipped again.
  let samplerContext = parent;
  if (sampling === undefined && newTraces !== undefined) {
    if (!newTraces.sampleNewTrace()) return { traceparent: unsampledTraceparent() };
    samplerContext = acceptedRoot(parent);
  }
  // Named once recorded: a new trace the sampler declines never builds its name (the edge's is its route).
  const span = tracer.startSpan("umw", { kind: SpanKind.SERVER }, samplerContext);
  if (span.isRecording()) return { span: span.updateName(name()), context: trace.setSpan(parent, span) };
  const spanContext = span.spanContext();
  return isSpanContextValid(spanContext) ? { traceparent: traceparentOf(spanContext) } : undefined;
}

/** The span name and attributes of a gRPC method (OpenTelemetry RPC conventions). */
function rpcSpan(method: { readonly name: string; readonly parent: { readonly typeName: string } }) {
  return {
    name: `${method.parent.typeName}/${method.name}`,
    attributes: { "rpc.system": "grpc", "rpc.service": method.parent.typeName, "rpc.method": method.name },
  };
}

/** Server codes that are the server's failure, not the caller's (OpenTelemetry gRPC conventions). */
const SERVER_ERROR_CODES = new Set([Code.UNKNOWN, Code.DEADLINE_EXCEEDED, Code.UNIMPLEMENTED, Code.INTERNAL, Code.UNAVAILABLE, Code.DATA_LOSS]);

/**
 * Server: the call's SERVER span (`enterTrace`), with the handler inside it, ended with the call's
 * status (`rpc.grpc.status_code`). A new unsampled trace's `traceparent` joins the call's headers,
 * so that calls made while serving and rows written for it carry the decision on.
 */
export const serverTracing: ServerInterceptor = (next) => (req) => {
  if (!enabled) return next(req);
  const headers = req.context.headers;
  const entry = enterTrace(headers, () => rpcSpan(req.method).name);
  if (entry === undefined) return next(req);
  if (entry.span === undefined) {
    // The record is this call's own (MeshServer builds it per call from the metadata); metadata
    // forwarding and the outbox read `traceparent` from it. A frozen record is left as it is.
    if (Object.isExtensible(headers)) (headers as Record<string, string>).traceparent = entry.traceparent;
    return next(req);
  }
  const { span } = entry;
  span.setAttributes(rpcSpan(req.method).attributes);
  return context.with(entry.context, () => {
    const call = next(req).then((response) =>
      // A stream's handler runs as its messages are pulled (by the server, after this returns): inside the span too.
      response.stream ? { stream: true as const, message: withinContext(response.message, entry.context) } : response,
    );
    return whenCallEnds(call, (error) => {
      const code = error === undefined ? Code.OK : toRpcError(error).code;
      span.setAttribute("rpc.grpc.status_code", code);
      if (SERVER_ERROR_CODES.has(code)) span.setStatus({ code: SpanStatusCode.ERROR, message: Code[code] });
      span.end();
    });
  });
};

/**
 * Client: inside a recording span, the call's CLIENT span, whose context goes out as `traceparent`
 * (replacing a forwarded one). Inside an unsampled one (e.g. a message handled in an unsampled
 * trace), its `traceparent` goes out unless the call has one. Else the call as it is: the served
 * call's headers (metadata forwarding) carry the trace on.
 */
export const clientTracing: ClientInterceptor = (next) => (req) => {
  if (!enabled) return next(req);
  const active = context.active();
  const parent = trace.getSpan(active);
  if (parent === undefined) return next(req);
  if (!parent.isRecording()) {
    const spanContext = parent.spanContext();
    if (isSpanContextValid(spanContext) && req.header.get("traceparent").length === 0) req.header.set("traceparent", traceparentOf(spanContext));
    return next(req);
  }
  const { name, attributes } = rpcSpan(req.method);
  const span = tracer.startSpan(name, { kind: SpanKind.CLIENT, attributes }, active);
  req.header.set("traceparent", traceparentOf(span.spanContext()));
  return whenCallEnds(next(req), (error) => {
    const code = statusCodeOf(error);
    span.setAttribute("rpc.grpc.status_code", code);
    if (code !== Code.OK) span.setStatus({ code: SpanStatusCode.ERROR, message: Code[code] });
    span.end();
  });
};

/** `messages`, each pulled inside `active`. */
function withinContext<M>(messages: AsyncIterable<M>, active: Context): AsyncIterable<M> {
  return {
    [Symbol.asyncIterator]: () => {
      const iterator = messages[Symbol.asyncIterator]();
      return {
        next: () => context.with(active, () => iterator.next()),
        return: (value?: unknown) => context.with(active, () => iterator.return?.(value) ?? Promise.resolve({ done: true as const, value: value as M })),
      };
    },
  };
}
