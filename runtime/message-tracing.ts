import { context, propagation, SpanKind, SpanStatusCode, trace, type Context, type Span } from "@opentelemetry/api";
import type { EventBus, IncomingMessage, MessageBatch, OutgoingMessage } from "./bus.js";
import { REQUEST_ID_HEADER } from "./interceptor-request-id.js";
import { traceparentSampling } from "./interceptor-tracing.js";
import { messageScope } from "./log-context.js";
import type { Logger } from "./logger.js";

const tracer = trace.getTracer("umw.bus");

const headerGetter = {
  keys: (carrier: Readonly<Record<string, string>>) => Object.keys(carrier),
  get: (carrier: Readonly<Record<string, string>>, key: string) => carrier[key],
};

/** The trace context a message carries (`traceparent`/`tracestate` headers), or none. */
function carriedContext(headers: Readonly<Record<string, string>> | undefined): Context | undefined {
  if (!headers?.traceparent) return undefined;
  return propagation.extract(trace.deleteSpan(context.active()), headers, headerGetter);
}

/**
 * The bus with OpenTelemetry messaging spans (https://opentelemetry.io/docs/specs/semconv/messaging/):
 *
 * A message whose `traceparent` says "not sampled" gets no span and no context switch, on either
 * side: it travels as it is, and the handler's writes keep its `traceparent`.
 *
 * - publish: one PRODUCER span `send <topic>` per message, the child of the trace context the
 *   message already carries (the outbox row keeps the context of the transaction that wrote it),
 *   else of the active one; its own context replaces `traceparent` in the headers, so consumers
 *   continue the trace from the send.
 * - subscribe: one CONSUMER span `process <topic>` per delivered message, the child of the
 *   producer's context (single-message processing, so parent and link are the same context), with
 *   the handler running inside it; the handler's log lines carry the message's `x-request-id`
 *   (runtime/log-context.ts), and a debug line names each handled message.
 *
 * Without a registered tracer provider (tracing off) the spans are no-ops and the headers pass
 * through unchanged.
 */
export function tracedBus(bus: EventBus, log: Logger): EventBus {
  return {
    ensureTopics: (topics) => bus.ensureTopics(topics),
    ...(bus.backlog && { backlog: bus.backlog.bind(bus) }),
    close: () => bus.close(),
    async publish(topic, messages) {
      if (messages.length === 0) return bus.publish(topic, messages);
      const spans = messages.map((message) =>
        // Unsampled: no span at all; the carried context says so already.
        traceparentSampling(message.headers?.traceparent) === "unsampled"
          ? undefined
          : tracer.startSpan(
              `send ${topic}`,
              { kind: SpanKind.PRODUCER, attributes: { "messaging.system": "kafka", "messaging.operation.type": "send", "messaging.destination.name": topic, "messaging.kafka.message.key": message.key } },
              carriedContext(message.headers) ?? context.active(),
            ),
      );
      const sent = messages.map((message, i): OutgoingMessage => {
        const span = spans[i];
        if (!span?.isRecording()) return message;
        const headers: Record<string, string> = { ...message.headers };
        propagation.inject(trace.setSpan(context.active(), span), headers);
        return { ...message, headers };
      });
      try {
        await bus.publish(topic, sent);
      } catch (error) {
        for (const span of spans) span?.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error).message });
        throw error;
      } finally {
        for (const span of spans) span?.end();
      }
    },
    subscribe(options) {
      const handled = async (message: IncomingMessage) => {
        await options.handle(message);
        log.debug({ topic: message.topic, partition: message.partition, offset: String(message.offset) }, "message handled");
      };
      const handle = (message: IncomingMessage) => {
        // Unsampled: no span, no context; what the handler writes keeps the message's traceparent (activeTraceContext's fallback).
        const consumed = startConsumerSpan(message, options.group);
        return withinMessage(message, consumed, async () => {
          try {
            await handled(message);
          } catch (error) {
            consumed?.span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error).message });
            throw error;
          } finally {
            consumed?.span.end();
          }
        });
      };
      return bus.subscribe({ ...options, handle });
    },
    subscribeBatch(options) {
      // One CONSUMER span per message, open while its batch is handled; `within` enters it (and
      // the message's request id) for what the handler does about that message.
      const handleBatch = async (batch: MessageBatch) => {
        const spans = new Map<IncomingMessage, { readonly span: Span; readonly parent: Context }>();
        for (const message of batch.messages) {
          const consumed = startConsumerSpan(message, options.group);
          if (consumed) spans.set(message, consumed);
        }
        const traced: MessageBatch = {
          messages: batch.messages,
          within: (message, fn) => withinMessage(message, spans.get(message), () => batch.within(message, fn)),
        };
        try {
          await options.handleBatch(traced);
          if (log.isLevelEnabled("debug")) {
            // The same line per message as a subscription of single messages writes, under its request id.
            for (const message of batch.messages) traced.within(message, () => log.debug({ topic: message.topic, partition: message.partition, offset: String(message.offset) }, "message handled"));
          }
        } catch (error) {
          for (const { span } of spans.values()) span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error).message });
          throw error;
        } finally {
          for (const { span } of spans.values()) span.end();
        }
      };
      return bus.subscribeBatch({ ...options, handleBatch });
    },
  };
}

/** Runs `fn` under the message's request id and, when it has one, inside its consumer span. */
function withinMessage<T>(message: IncomingMessage, consumed: { readonly span: Span; readonly parent: Context } | undefined, fn: () => T): T {
  const scoped = () => messageScope({ requestId: message.headers[REQUEST_ID_HEADER] }, fn);
  return consumed ? context.with(trace.setSpan(consumed.parent, consumed.span), scoped) : scoped();
}

/** The CONSUMER span of a message, a child of the context it carries and linked to it; undefined when that context is unsampled. */
function startConsumerSpan(message: IncomingMessage, group: string): { readonly span: Span; readonly parent: Context } | undefined {
  if (traceparentSampling(message.headers.traceparent) === "unsampled") return undefined;
  const carried = carriedContext(message.headers);
  const parent = carried ?? trace.deleteSpan(context.active());
  const span = tracer.startSpan(
    `process ${message.topic}`,
    {
      kind: SpanKind.CONSUMER,
      attributes: {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": message.topic,
        "messaging.consumer.group.name": group,
        "messaging.destination.partition.id": String(message.partition),
        "messaging.kafka.offset": Number(message.offset),
        "messaging.kafka.message.key": message.key,
      },
      links: carried ? [{ context: trace.getSpanContext(carried)! }] : [],
    },
    parent,
  );
  return { span, parent };
}

/**
 * The W3C trace context to store with a message written now (an outbox row, a domain event): the
 * active span's, so the consumer continues from where it was written; `fallback` (what the caller
 * sent) when tracing is off.
 */
export function activeTraceContext(fallback: { readonly traceparent?: string; readonly tracestate?: string }): { traceparent?: string; tracestate?: string } {
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return carrier.traceparent ? { traceparent: carrier.traceparent, tracestate: carrier.tracestate } : { traceparent: fallback.traceparent, tracestate: fallback.tracestate };
}
