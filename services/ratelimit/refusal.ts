import { create } from "@bufbuild/protobuf";
import { anyPack, DurationSchema } from "@bufbuild/protobuf/wkt";
import { RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import type { Status } from "../../gen/google/rpc/status_pb.js";
import { Code, RpcError } from "../../runtime/errors.js";
import { rateLimitHeaders, tightest } from "./headers.js";
import type { Decision } from "./limiter.js";

/** A refusal: the google.rpc.Status (ErrorInfo, and RetryInfo when a limit was hit) and the headers that go with it. */
export interface Refusal {
  readonly status: Status;
  readonly headers: Record<string, string>;
}

/** The refusal for a decision that does not let the request through; undefined when it does. */
export function refusalOf(decision: Decision): Refusal | undefined {
  if (decision.outcome === "allowed" || (decision.outcome === "unavailable" && decision.allowed)) return undefined;
  const headers = rateLimitHeaders(decision);
  if (decision.outcome === "unavailable") {
    return { status: new RpcError(Code.UNAVAILABLE, "RATE_LIMITER_UNAVAILABLE", "the rate limiter cannot decide now; retry").toStatus(), headers };
  }
  const policy = tightest(decision.policies);
  const status = new RpcError(Code.RESOURCE_EXHAUSTED, "RATE_LIMITED", `rate limit "${policy.policy}" exceeded; retry in ${Math.ceil(decision.retryAfterMs)} ms`, {
    policy: policy.policy,
    retry_after_ms: String(Math.ceil(decision.retryAfterMs)),
  }).toStatus();
  const ms = Math.ceil(decision.retryAfterMs);
  status.details.push(anyPack(RetryInfoSchema, create(RetryInfoSchema, { retryDelay: create(DurationSchema, { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 }) })));
  return { status, headers };
}
