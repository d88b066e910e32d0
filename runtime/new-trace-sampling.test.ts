import { test } from "node:test";
import assert from "node:assert/strict";
import { ROOT_CONTEXT, SamplingDecision } from "@opentelemetry/api";
import { acceptedRoot, NewTraceSampler, unsampledTraceparent } from "./new-trace-sampling.js";
import { traceparentSampling } from "./interceptor-tracing.js";

const sampled = (sampler: NewTraceSampler, n: number) => Array.from({ length: n }, () => sampler.sampleNewTrace()).filter(Boolean).length;

test("new traces are sampled at the ratio: 0 never, 1 always, 0.1 about a tenth", () => {
  assert.equal(sampled(new NewTraceSampler(0), 10_000), 0);
  assert.equal(sampled(new NewTraceSampler(1), 10_000), 10_000);
  const tenth = sampled(new NewTraceSampler(0.1), 10_000);
  assert.ok(tenth > 850 && tenth < 1150, `${tenth} of 10,000 (1,000 ± 30)`);
});

test("the SDK's root decision: a root the caller accepted is recorded without a second flip; any other root flips", () => {
  const never = new NewTraceSampler(0);
  assert.equal(never.shouldSample(acceptedRoot(ROOT_CONTEXT)).decision, SamplingDecision.RECORD_AND_SAMPLED);
  assert.equal(never.shouldSample(ROOT_CONTEXT).decision, SamplingDecision.NOT_RECORD);
  assert.equal(new NewTraceSampler(1).shouldSample(ROOT_CONTEXT).decision, SamplingDecision.RECORD_AND_SAMPLED);
});

test("unsampledTraceparent: a valid W3C traceparent, flags 00, fresh ids every time (also across pool refills)", () => {
  const seen = new Set<string>();
  for (let i = 0; i < 1_000; i++) {
    const traceparent = unsampledTraceparent();
    assert.match(traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    assert.equal(traceparentSampling(traceparent), "unsampled");
    seen.add(traceparent.slice(3, 35));
  }
  assert.equal(seen.size, 1_000);
});
