import { createContextKey } from "@opentelemetry/api";
import { processContext, withContextValue } from "./async-context.js";
import type { Logger } from "./logger.js";

/** What a handler knows about the call it serves. */
export interface CallContext {
  readonly requestId: string;
  /** Absolute deadline of the incoming call, if the caller set one; downstream calls inherit it. */
  readonly deadline: Date | undefined;
  /** Identity of the mTLS peer (certificate SAN DNS name or CN), or undefined on an insecure port. */
  readonly peer: string | undefined;
  /** Incoming metadata, lower-cased keys, first value of each. */
  readonly headers: Readonly<Record<string, string>>;
  /** Aborted when the caller cancels or the server shuts down. */
  readonly signal: AbortSignal;
  readonly log: Logger;
  /** Adds a header to the response (sent with the first message, or with the status, or by sendHeaders). */
  setHeader(key: string, value: string): void;
  /**
   * Sends the response headers now instead of with the first message: a stream that may wait before
   * its first message calls it once the call is accepted, so the client sees the stream open (HTTP
   * status and content type through the edges) rather than a call that hangs. Headers set after it
   * are not sent. Idempotent; absent where there is no wire to flush (in-process unary calls, tests).
   */
  readonly sendHeaders?: () => void;
}

const CALL = createContextKey("umw.call");

export function runInCall<A extends unknown[], T>(ctx: CallContext, fn: (...args: A) => T, ...args: A): T {
  return withContextValue(CALL, ctx, fn, ...args);
}

/** The call being served on this async path, if any: used to propagate deadline and request id. */
export function currentCall(): CallContext | undefined {
  return processContext.active().getValue(CALL) as CallContext | undefined;
}
