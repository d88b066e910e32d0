import { AsyncLocalStorage } from "node:async_hooks";

/** What a consumed message's log lines carry besides its trace: the request id that caused it. */
export interface MessageScope {
  readonly requestId: string | undefined;
}

const scope = new AsyncLocalStorage<MessageScope>();

/** Runs `fn` (a message handler) so that every line it logs names the message's request id. */
export function messageScope<T>(current: MessageScope, fn: () => T): T {
  return scope.run(current, fn);
}

/** The scope of the message being handled on this async path, if any. */
export function currentMessageScope(): MessageScope | undefined {
  return scope.getStore();
}
