import { after, before, beforeEach } from "node:test";
import type { Sampler } from "@opentelemetry/api";
import { node } from "@opentelemetry/sdk-node";
import { setCallTracing } from "../../runtime/interceptor-tracing.js";

/**
 * For the tests of the current file or suite: a tracer provider with `sampler` whose spans are
 * kept in memory, registered with call tracing on before them and shut down after; the exporter is
 * emptied before each test. Returns the exporter to read the spans from.
 */
export function inMemoryTracing(sampler: Sampler): node.InMemorySpanExporter {
  const exporter = new node.InMemorySpanExporter();
  const provider = new node.NodeTracerProvider({ sampler, spanProcessors: [new node.SimpleSpanProcessor(exporter)] });
  before(() => {
    provider.register();
    setCallTracing(true);
  });
  after(async () => {
    setCallTracing(false);
    await provider.shutdown();
  });
  beforeEach(() => exporter.reset());
  return exporter;
}
