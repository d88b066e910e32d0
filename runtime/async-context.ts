import { AsyncLocalStorage } from "node:async_hooks";
import { ROOT_CONTEXT, type Context, type ContextManager } from "@opentelemetry/api";

/**
 * The process's ONE async-local store, holding an OpenTelemetry `Context`: the call being served
 * (runtime/call-context.ts), the message being handled (runtime/log-context.ts) and, when tracing
 * is on, the active span all live in it under their own keys.
 *
 * Why one: on Node 20 every enabled AsyncLocalStorage adds work to the creation of every promise
 * and async resource in the process (a property copied from the current resource), and umw makes
 * a great many promises per request. Three stores (call, message, the SDK's context manager) cost
 * the read path about 15 % of its CPU more than one; the SDK's store was turned on by the first
 * sampled request, which is why tracing at 10 % cost nearly as much as at 100 %
 * (docs/observability.md, "What a span costs").
 *
 * It is also the context manager the tracing SDK is given (runtime/telemetry.ts), so OpenTelemetry's
 * `context.with` and umw's own values share the one store. enable/disable are no-ops: umw needs the
 * store whether tracing is on or not, and a telemetry shutdown must not drop the calls in flight.
 */
class ProcessContext implements ContextManager {
  private readonly storage = new AsyncLocalStorage<Context>();

  active(): Context {
    return this.storage.getStore() ?? ROOT_CONTEXT;
  }

  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(context: Context, fn: F, thisArg?: ThisParameterType<F>, ...args: A): ReturnType<F> {
    const bound = thisArg === undefined ? fn : fn.bind(thisArg);
    return this.storage.run(context, bound as (...args: A) => ReturnType<F>, ...args);
  }

  bind<T>(context: Context, target: T): T {
    if (typeof target !== "function") return target;
    const manager = this;
    const fn = target as unknown as (...args: unknown[]) => unknown;
    return function (this: unknown, ...args: unknown[]) {
      return manager.with(context, () => fn.apply(this, args));
    } as unknown as T;
  }

  enable(): this {
    return this;
  }

  disable(): this {
    return this;
  }
}

export const processContext = new ProcessContext();

/** Runs `fn` with `key` set to `value` in the active context (everything else in it kept). */
export function withContextValue<A extends unknown[], T>(key: symbol, value: unknown, fn: (...args: A) => T, ...args: A): T {
  return processContext.with(processContext.active().setValue(key, value), fn, undefined, ...args);
}
