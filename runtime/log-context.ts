import { createContextKey } from "@opentelemetry/api";
import { processContext, withContextValue } from "./async-context.js";

/** What a consumed message's log lines carry besides its trace: the request id that caused it. */
export interface MessageScope {
  readonly requestId: string | undefined;
}

const MESSAGE = createContextKey("umw.message");

/** Runs `fn` (a message handler) so that every line it logs names the message's request id. */
export function messageScope<T>(current: MessageScope, fn: () => T): T {
  return withContextValue(MESSAGE, current, fn);
}

/** The scope of the message being handled on this async path, if any. */
export function currentMessageScope(): MessageScope | undefined {
  return processContext.active().getValue(MESSAGE) as MessageScope | undefined;
}
