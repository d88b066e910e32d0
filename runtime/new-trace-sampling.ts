import { randomFillSync } from "node:crypto";
import { createContextKey, SamplingDecision, type Context, type Sampler, type SamplingResult } from "@opentelemetry/api";

/**
 * Whether a new trace (a request without a valid `traceparent`, a message without one) is recorded:
 * at `ratio`, decided once where the trace starts; parent-based below it (runtime/telemetry.ts puts
 * this under the SDK's ParentBasedSampler).
 *
 * The tracing interceptors ask `sampleNewTrace()` before the SDK: a declined new trace then costs a
 * coin flip and `unsampledTraceparent()` (about 0.3 µs), instead of the SDK's non-recording span,
 * its ids, TraceIdRatioBasedSampler's pass over the trace id and the span context's validation
 * (about 2 µs, `npm run bench:tracing-cost`'s profiles). A new trace they accepted is started with
 * `acceptedRoot` as its parent context, which `shouldSample` records without flipping again. Any
 * other root (a message without trace context) gets its flip in `shouldSample`.
 */
export class NewTraceSampler implements Sampler {
  constructor(readonly ratio: number) {}

  sampleNewTrace(): boolean {
    return Math.random() < this.ratio;
  }

  shouldSample(parent: Context): SamplingResult {
    return { decision: parent.getValue(ACCEPTED) === true || this.sampleNewTrace() ? SamplingDecision.RECORD_AND_SAMPLED : SamplingDecision.NOT_RECORD };
  }

  toString(): string {
    return `NewTraceSampler{${this.ratio}}`;
  }
}

const ACCEPTED = createContextKey("umw.new-trace-accepted");

/** The parent context of a new trace the caller has sampled already: root, recorded without a second flip. */
export function acceptedRoot(root: Context): Context {
  return root.setValue(ACCEPTED, true);
}

/** Random bytes drawn in bulk: 24 a traceparent (16 trace id, 8 parent id). */
const POOL = Buffer.alloc(24 * 256);
let poolOffset = POOL.length;

/**
 * A W3C `traceparent` for a new trace that is not sampled: random trace and parent ids, flags `00`.
 * Passed on, it makes the services and consumers behind keep the decision.
 */
export function unsampledTraceparent(): string {
  for (;;) {
    if (poolOffset === POOL.length) {
      randomFillSync(POOL);
      poolOffset = 0;
    }
    const at = poolOffset;
    poolOffset += 24;
    const traceId = POOL.toString("hex", at, at + 16);
    const parentId = POOL.toString("hex", at + 16, at + 24);
    // All-zero ids are invalid (W3C); with random bytes this is a 2^-64 case, drawn again.
    if (traceId !== "00000000000000000000000000000000" && parentId !== "0000000000000000") return `00-${traceId}-${parentId}-00`;
  }
}
