import { beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Metadata } from "@grpc/grpc-js";
import { context, SamplingDecision, SpanKind, SpanStatusCode, trace, type Sampler } from "@opentelemetry/api";
import { tracing } from "@opentelemetry/sdk-node";
import { QueryService } from "../gen/umw/v1/query_pb.js";
import { Code, RpcError } from "./errors.js";
import { composeChain, type ClientRequest, type ClientResponse, type ClientUnaryResponse, type ServerCallContext, type ServerRequest, type ServerResponse } from "./interceptor.js";
import { clientTracing, serverTracing, setCallTracing, traceparentSampling } from "./interceptor-tracing.js";
import { NewTraceSampler } from "./new-trace-sampling.js";
import { inMemoryTracing } from "../test/support/in-memory-tracing.js";

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT = "00f067aa0ba902b7";
const METHOD = QueryService.method.getEntity;

/** Root decisions as `sampleRoots` says, or `newTraces`' when set (as runtime/telemetry.ts wires it). */
class SwitchedRootSampler implements Sampler {
  sampleRoots = true;
  newTraces: NewTraceSampler | undefined;
  shouldSample(...args: Parameters<Sampler["shouldSample"]>) {
    if (this.newTraces) return this.newTraces.shouldSample(args[0]);
    return { decision: this.sampleRoots ? SamplingDecision.RECORD_AND_SAMPLED : SamplingDecision.NOT_RECORD };
  }
  toString() {
    return "SwitchedRootSampler";
  }
}

/** Parent-based like runtime/telemetry.ts; counts the spans started (the SDK asks the sampler once for each, recorded or not). */
class CountingSampler implements Sampler {
  asked = 0;
  readonly roots = new SwitchedRootSampler();
  private readonly parentBased = new tracing.ParentBasedSampler({ root: this.roots });
  shouldSample(...args: Parameters<Sampler["shouldSample"]>) {
    this.asked++;
    return this.parentBased.shouldSample(...args);
  }
  toString() {
    return "CountingSampler";
  }
}

function serverRequest(headers: Record<string, string>): ServerRequest {
  return { method: METHOD, message: {} as ServerRequest["message"], context: { headers } as unknown as ServerCallContext };
}

function clientRequest(header = new Metadata()): ClientRequest {
  return { method: METHOD, message: {}, header, deadline: Infinity, signal: undefined, context: undefined, onHeader: undefined };
}

/** What the handler behind the server interceptor saw. */
interface Seen {
  activeSpan: string | undefined;
  traceparent: string | undefined;
}

function serverChain(result: () => Promise<unknown> = async () => ({})) {
  const seen: Seen[] = [];
  const chain = composeChain<ServerRequest, ServerResponse>([serverTracing], async (req) => {
    seen.push({ activeSpan: trace.getActiveSpan()?.spanContext().spanId, traceparent: req.context.headers.traceparent });
    return { stream: false, message: await result() };
  });
  return { chain, seen };
}

describe("tracing interceptors", () => {
  const sampler = new CountingSampler();
  const exporter = inMemoryTracing(sampler);

  beforeEach(() => {
    sampler.asked = 0;
    sampler.roots.sampleRoots = true;
    sampler.roots.newTraces = undefined;
    setCallTracing(true);
  });

  test("traceparentSampling reads the sampled flag and refuses malformed values", () => {
    assert.equal(traceparentSampling(`00-${TRACE}-${PARENT}-01`), "sampled");
    assert.equal(traceparentSampling(`00-${TRACE}-${PARENT}-00`), "unsampled");
    assert.equal(traceparentSampling(`00-${TRACE}-${PARENT}-03`), "sampled");
    assert.equal(traceparentSampling(undefined), undefined);
    assert.equal(traceparentSampling(`00-${"0".repeat(32)}-${PARENT}-01`), undefined, "all-zero trace id");
    assert.equal(traceparentSampling(`00-${TRACE}-${"0".repeat(16)}-01`), undefined, "all-zero parent id");
    assert.equal(traceparentSampling(`ff-${TRACE}-${PARENT}-01`), undefined, "version ff");
    assert.equal(traceparentSampling(`00-${TRACE.toUpperCase()}-${PARENT}-01`), undefined, "upper case");
    assert.equal(traceparentSampling(`00-${TRACE}-${PARENT}-01x`), undefined);
  });

  test("server: an unsampled parent gets no span, no sampler decision, no active span; its traceparent is untouched", async () => {
    const { chain, seen } = serverChain();
    const traceparent = `00-${TRACE}-${PARENT}-00`;
    await chain(serverRequest({ traceparent }));
    assert.equal(sampler.asked, 0, "no span was started, not even a non-recording one");
    assert.equal(exporter.getFinishedSpans().length, 0);
    assert.deepEqual(seen, [{ activeSpan: undefined, traceparent }]);
  });

  test("server: a sampled parent gets one SERVER span, its child, with the handler inside it", async () => {
    const { chain, seen } = serverChain();
    await chain(serverRequest({ traceparent: `00-${TRACE}-${PARENT}-01` }));
    const spans = exporter.getFinishedSpans();
    assert.equal(spans.length, 1);
    const [span] = spans;
    assert.equal(span!.kind, SpanKind.SERVER);
    assert.equal(span!.name, "umw.v1.QueryService/GetEntity");
    assert.equal(span!.spanContext().traceId, TRACE);
    assert.equal(span!.parentSpanContext?.spanId, PARENT);
    assert.deepEqual(
      [span!.attributes["rpc.system"], span!.attributes["rpc.service"], span!.attributes["rpc.method"], span!.attributes["rpc.grpc.status_code"]],
      ["grpc", "umw.v1.QueryService", "GetEntity", Code.OK],
    );
    assert.equal(span!.status.code, SpanStatusCode.UNSET);
    assert.equal(seen[0]!.activeSpan, span!.spanContext().spanId, "the handler runs inside the span");
  });

  test("server: a stream's messages are made inside its span, which ends when the stream does", async () => {
    const inside: (string | undefined)[] = [];
    const chain = composeChain<ServerRequest, ServerResponse>([serverTracing], async () => ({
      stream: true,
      message: (async function* () {
        inside.push(trace.getActiveSpan()?.spanContext().spanId);
        yield 1;
        inside.push(trace.getActiveSpan()?.spanContext().spanId);
        yield 2;
      })(),
    }));
    const response = await chain(serverRequest({ traceparent: `00-${TRACE}-${PARENT}-01` }));
    assert.ok(response.stream);
    assert.equal(exporter.getFinishedSpans().length, 0, "not ended before the stream is");
    const messages: unknown[] = [];
    for await (const message of response.message) messages.push(message);
    assert.deepEqual(messages, [1, 2]);
    const [span] = exporter.getFinishedSpans();
    assert.ok(span, "ended with the stream");
    assert.deepEqual(inside, [span.spanContext().spanId, span.spanContext().spanId]);
  });

  test("server: a failed call ends its span with the status; a server fault is an error, a caller's mistake is not", async () => {
    for (const [thrown, code, status] of [
      [new RpcError(Code.NOT_FOUND, "ENTITY_NOT_FOUND", "no such entity"), Code.NOT_FOUND, SpanStatusCode.UNSET],
      [new Error("bug"), Code.INTERNAL, SpanStatusCode.ERROR],
    ] as const) {
      exporter.reset();
      const { chain } = serverChain(async () => {
        throw thrown;
      });
      await assert.rejects(chain(serverRequest({ traceparent: `00-${TRACE}-${PARENT}-01` })));
      const [span] = exporter.getFinishedSpans();
      assert.equal(span?.attributes["rpc.grpc.status_code"], code);
      assert.equal(span?.status.code, status);
    }
  });

  test("server: a new trace the sampler declines gets no recorded span, and an unsampled traceparent to pass on", async () => {
    sampler.roots.sampleRoots = false;
    const { chain, seen } = serverChain();
    await chain(serverRequest({}));
    assert.equal(sampler.asked, 1);
    assert.equal(exporter.getFinishedSpans().length, 0);
    assert.equal(seen[0]!.activeSpan, undefined);
    assert.match(seen[0]!.traceparent ?? "", /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
  });

  test("server: a new trace the sampler takes is a root span", async () => {
    const { chain } = serverChain();
    await chain(serverRequest({ traceparent: "garbage" }));
    const [span] = exporter.getFinishedSpans();
    assert.ok(span);
    assert.equal(span.parentSpanContext, undefined);
  });

  test("server, with the new-trace sampler: a declined new trace costs no SDK span, sampler call or context, and gets an unsampled traceparent", async () => {
    setCallTracing(true, new NewTraceSampler(0));
    const { chain, seen } = serverChain();
    for (let i = 0; i < 20; i++) await chain(serverRequest({}));
    assert.equal(sampler.asked, 0, "the SDK was not asked");
    assert.equal(exporter.getFinishedSpans().length, 0);
    assert.ok(seen.every((s) => s.activeSpan === undefined));
    assert.ok(seen.every((s) => /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/.test(s.traceparent ?? "")), seen.map((s) => s.traceparent).join(" "));
    assert.equal(new Set(seen.map((s) => s.traceparent)).size, 20, "each new trace its own ids");
  });

  test("server, with the new-trace sampler: an accepted new trace is a recorded root span, decided once (not at ratio squared)", async () => {
    const newTraces = new NewTraceSampler(0.5);
    setCallTracing(true, newTraces);
    sampler.roots.newTraces = newTraces;
    const { chain, seen } = serverChain();
    const calls = 400;
    for (let i = 0; i < calls; i++) await chain(serverRequest({}));
    const spans = exporter.getFinishedSpans();
    assert.ok(spans.every((span) => span.parentSpanContext === undefined && span.spanContext().traceFlags === 1));
    // Binomial(400, 0.5): 200 ± 10; a second flip in the SDK would give 100 ± 8.7.
    assert.ok(spans.length > 150 && spans.length < 250, `${spans.length} of ${calls} recorded`);
    assert.equal(seen.filter((s) => s.activeSpan !== undefined).length, spans.length, "the recorded ones run inside their span");
    assert.equal(sampler.asked, spans.length, "the SDK is asked only for the accepted ones");
  });

  test("tracing off: no sampler decision even for a sampled parent", async () => {
    setCallTracing(false);
    try {
      const { chain, seen } = serverChain();
      await chain(serverRequest({ traceparent: `00-${TRACE}-${PARENT}-01` }));
      assert.equal(sampler.asked, 0);
      assert.equal(exporter.getFinishedSpans().length, 0);
      assert.equal(seen[0]!.activeSpan, undefined);
    } finally {
      setCallTracing(true);
    }
  });

  test("client: inside a recording span, a CLIENT span whose context replaces the traceparent sent", async () => {
    const sent: string[] = [];
    const chain = composeChain<ClientRequest, ClientResponse>([clientTracing], async (req) => {
      sent.push(String(req.header.get("traceparent")[0]));
      throw new RpcError(Code.UNAVAILABLE, "DATABASE_UNAVAILABLE", "down");
    });
    const outer = trace.getTracer("test").startSpan("outer");
    const header = new Metadata();
    header.set("traceparent", `00-${TRACE}-${PARENT}-01`);
    await assert.rejects(context.with(trace.setSpan(context.active(), outer), () => chain(clientRequest(header))));
    outer.end();
    const client = exporter.getFinishedSpans().find((span) => span.kind === SpanKind.CLIENT);
    assert.ok(client);
    assert.equal(client.name, "umw.v1.QueryService/GetEntity");
    assert.equal(client.parentSpanContext?.spanId, outer.spanContext().spanId);
    assert.deepEqual(sent, [`00-${outer.spanContext().traceId}-${client.spanContext().spanId}-01`]);
    assert.equal(client.attributes["rpc.grpc.status_code"], Code.UNAVAILABLE);
    assert.equal(client.status.code, SpanStatusCode.ERROR);
  });

  test("client: outside any span, no span and the headers as they are; inside an unsampled one, its traceparent", async () => {
    const sent: (string | undefined)[] = [];
    const chain = composeChain<ClientRequest, ClientResponse>([clientTracing], async (req) => {
      sent.push(req.header.get("traceparent")[0] as string | undefined);
      return { stream: false as const, message: {} as ClientUnaryResponse["message"], header: undefined };
    });
    await chain(clientRequest());
    const unsampled = trace.wrapSpanContext({ traceId: TRACE, spanId: PARENT, traceFlags: 0 });
    await context.with(trace.setSpan(context.active(), unsampled), () => chain(clientRequest()));
    assert.equal(sampler.asked, 0);
    assert.equal(exporter.getFinishedSpans().length, 0);
    assert.deepEqual(sent, [undefined, `00-${TRACE}-${PARENT}-00`]);
  });
});
