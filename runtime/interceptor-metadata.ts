import type { ClientInterceptor } from "./interceptor.js";

/** Headers of the call being served that travel on to the calls it makes: W3C trace context. */
export const DEFAULT_FORWARDED_METADATA: readonly string[] = ["traceparent", "tracestate"];

/** Client: copies the named headers of the call being served to the outgoing metadata, unless set already. */
export function clientForwardMetadata(names: readonly string[]): ClientInterceptor {
  return (next) => (req) => {
    const incoming = req.context?.headers;
    if (incoming) {
      for (const name of names) {
        const value = incoming[name];
        if (value !== undefined && req.header.get(name).length === 0) req.header.set(name, value);
      }
    }
    return next(req);
  };
}
