import { test } from "node:test";
import assert from "node:assert/strict";
import { context, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { node } from "@opentelemetry/sdk-node";
import type { IncomingMessage } from "./bus.js";
import { currentMessageScope } from "./log-context.js";
import { rootLogger } from "./logger.js";
import { MemoryBus } from "./memory-bus.js";
import { activeTraceContext, tracedBus } from "./message-tracing.js";

const log = rootLogger("silent");
const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT = "00f067aa0ba902b7";
const TRACEPARENT = `00-${TRACE}-${PARENT}-01`;

/** A traced MemoryBus with one topic, and the messages its subscriber got (with what the handler saw). */
async function busWithSubscriber(options: { failFirst?: boolean } = {}) {
  const bus = tracedBus(new MemoryBus(), log);
  await bus.ensureTopics([{ name: "t", partitions: 1 }]);
  const received: { message: IncomingMessage; activeSpan: string | undefined; requestId: string | undefined; stored: { traceparent?: string } }[] = [];
  let failures = options.failFirst ? 1 : 0;
  await bus.subscribe({
    topics: ["t"],
    group: "g",
    fromBeginning: true,
    handle: async (message) => {
      if (failures-- > 0) throw new Error("transient");
      received.push({ message, activeSpan: trace.getActiveSpan()?.spanContext().spanId, requestId: currentMessageScope()?.requestId, stored: activeTraceContext({}) });
    },
  });
  const next = async () => {
    for (let i = 0; i < 200 && received.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.ok(received.length, "the message was delivered");
    return received.shift()!;
  };
  return { bus, next };
}

test("tracing off: headers pass through unchanged, the stored context is the caller's", async () => {
  const { bus, next } = await busWithSubscriber();
  await bus.publish("t", [{ key: "k", value: new Uint8Array([1]), headers: { traceparent: TRACEPARENT, "x-request-id": "r-1" } }]);
  const got = await next();
  assert.equal(got.message.headers.traceparent, TRACEPARENT);
  assert.equal(got.activeSpan, undefined);
  assert.equal(got.requestId, "r-1", "the request id scope works without tracing");
  assert.deepEqual(activeTraceContext({ traceparent: TRACEPARENT }), { traceparent: TRACEPARENT, tracestate: undefined });
  await bus.close();
});

test("tracing on: producer span continues the carried context, consumer span continues the producer's", async (t) => {
  const exporter = new node.InMemorySpanExporter();
  const provider = new node.NodeTracerProvider({ spanProcessors: [new node.SimpleSpanProcessor(exporter)] });
  provider.register();
  t.after(() => provider.shutdown());

  await t.test("a message that carries a context", async () => {
    exporter.reset();
    const { bus, next } = await busWithSubscriber();
    await bus.publish("t", [{ key: "k", value: new Uint8Array([1]), headers: { traceparent: TRACEPARENT, "x-request-id": "r-2" } }]);
    const got = await next();
    await bus.close();
    const spans = exporter.getFinishedSpans();
    const producer = spans.find((span) => span.kind === SpanKind.PRODUCER)!;
    const consumer = spans.find((span) => span.kind === SpanKind.CONSUMER)!;
    assert.equal(producer.name, "send t");
    assert.equal(producer.spanContext().traceId, TRACE);
    assert.equal(producer.parentSpanContext?.spanId, PARENT, "the send is the child of the context the message carried");
    assert.equal(got.message.headers.traceparent, `00-${TRACE}-${producer.spanContext().spanId}-01`, "the headers now carry the send's context");
    assert.equal(consumer.name, "process t");
    assert.equal(consumer.parentSpanContext?.spanId, producer.spanContext().spanId, "the processing is the child of the send");
    assert.deepEqual(consumer.links.map((link) => link.context.spanId), [producer.spanContext().spanId], "and links to it");
    assert.equal(consumer.attributes["messaging.consumer.group.name"], "g");
    assert.equal(got.activeSpan, consumer.spanContext().spanId, "the handler runs inside the consumer span");
    assert.equal(got.requestId, "r-2");
    assert.equal(got.stored.traceparent, `00-${TRACE}-${consumer.spanContext().spanId}-01`, "what the handler writes continues from its span");
  });

  await t.test("a message without a context is sent from the active span", async () => {
    exporter.reset();
    const { bus, next } = await busWithSubscriber();
    const outer = trace.getTracer("test").startSpan("outer");
    await context.with(trace.setSpan(context.active(), outer), () => bus.publish("t", [{ key: "k", value: new Uint8Array([1]) }]));
    outer.end();
    await next();
    await bus.close();
    const producer = exporter.getFinishedSpans().find((span) => span.kind === SpanKind.PRODUCER)!;
    assert.equal(producer.parentSpanContext?.spanId, outer.spanContext().spanId);
  });

  await t.test("a failing handler marks its span as an error", async () => {
    exporter.reset();
    const { bus } = await busWithSubscriber({ failFirst: true });
    await bus.publish("t", [{ key: "k", value: new Uint8Array([1]), headers: { traceparent: TRACEPARENT } }]);
    const consumers = () => exporter.getFinishedSpans().filter((span) => span.kind === SpanKind.CONSUMER);
    for (let i = 0; i < 200 && consumers().length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    await bus.close();
    assert.equal(consumers()[0]?.status.code, SpanStatusCode.ERROR);
    assert.equal(consumers()[0]?.status.message, "transient");
  });
});
