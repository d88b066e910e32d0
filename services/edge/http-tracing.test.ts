import { beforeEach, test } from "node:test";
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import type { IncomingHttpHeaders } from "node:http";
import { SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { tracing } from "@opentelemetry/sdk-node";
import { inMemoryTracing } from "../../test/support/in-memory-tracing.js";
import { traceHttpRequest } from "./http-tracing.js";

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT = "00f067aa0ba902b7";
const ROUTE = "/v1/tenants/{tenant}/types/{type}/entities/{id}";

let sampleRoots = true;
const exporter = inMemoryTracing(
  new tracing.ParentBasedSampler({
    root: { shouldSample: () => ({ decision: sampleRoots ? tracing.SamplingDecision.RECORD_AND_SAMPLED : tracing.SamplingDecision.NOT_RECORD }), toString: () => "switched" },
  }),
);
beforeEach(() => {
  sampleRoots = true;
});

/** One request through traceHttpRequest: what the handler saw, then the response closed with `status`. */
function serve(headers: IncomingHttpHeaders, status: number) {
  const req = { method: "GET", headers, httpVersion: "1.1" };
  const res = Object.assign(new EventEmitter(), { statusCode: 0, writableFinished: false });
  let activeSpan: string | undefined;
  let routeAsked = 0;
  traceHttpRequest(
    req,
    res,
    () => {
      routeAsked++;
      return ROUTE;
    },
    () => {
      activeSpan = trace.getActiveSpan()?.spanContext().spanId;
    },
  );
  res.statusCode = status;
  res.writableFinished = true;
  res.emit("close");
  return { activeSpan, routeAsked, headers: req.headers };
}

test("a sampled traceparent: a SERVER span named by the route, the handler inside it, ended with the status", () => {
  const seen = serve({ traceparent: `00-${TRACE}-${PARENT}-01` }, 503);
  const [span, ...others] = exporter.getFinishedSpans();
  assert.equal(others.length, 0);
  assert.ok(span);
  assert.equal(span.kind, SpanKind.SERVER);
  assert.equal(span.name, `GET ${ROUTE}`);
  assert.equal(span.parentSpanContext?.spanId, PARENT);
  assert.equal(span.spanContext().traceId, TRACE);
  assert.equal(span.attributes["http.route"], ROUTE);
  assert.equal(span.attributes["http.response.status_code"], 503);
  assert.equal(span.status.code, SpanStatusCode.ERROR);
  assert.equal(seen.activeSpan, span.spanContext().spanId);
  assert.equal(seen.routeAsked, 1);
});

test("an unsampled traceparent: no span, the route not even asked, the header as it came", () => {
  const traceparent = `00-${TRACE}-${PARENT}-00`;
  const seen = serve({ traceparent }, 200);
  assert.equal(exporter.getFinishedSpans().length, 0);
  assert.equal(seen.activeSpan, undefined);
  assert.equal(seen.routeAsked, 0);
  assert.equal(seen.headers.traceparent, traceparent);
});

test("no traceparent and the sampler declines: no span, and an unsampled traceparent for the upstream call", () => {
  sampleRoots = false;
  const seen = serve({}, 200);
  assert.equal(exporter.getFinishedSpans().length, 0);
  assert.equal(seen.activeSpan, undefined);
  assert.match(String(seen.headers.traceparent), /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
  assert.equal(seen.routeAsked, 0, "the route is matched for a recorded span only");
});

test("no traceparent and the sampler takes it: a root span", () => {
  serve({}, 200);
  const [span] = exporter.getFinishedSpans();
  assert.ok(span);
  assert.equal(span.parentSpanContext, undefined);
  assert.equal(span.status.code, SpanStatusCode.UNSET);
});
