import { createContextKey, type ContextValues, type HandlerContext } from "@connectrpc/connect";
import type { OutgoingHttpHeaders } from "node:http";

/**
 * Early response headers for server streams. connect-node commits a streaming response's headers
 * only with its first message (it waits for the first body bytes, so that a handler can still add
 * headers), so a stream that is accepted but has nothing to send yet (a realtime subscription
 * without a snapshot) would leave a Connect, gRPC-web or gRPC client without even an HTTP status
 * until the first change. The stream forwarder calls `sendStreamHeaders(hctx)` as soon as the
 * upstream sent its own headers (it accepted the call); the adapter then hands connect-node's
 * writer `headersOnce(res)`, which does not write them a second time.
 */

/** The response the headers go to, and how to flush them. */
export interface EarlyHeaderTarget {
  readonly headersSent: boolean;
  readonly destroyed: boolean;
  writeHead(status: number, headers: OutgoingHttpHeaders): unknown;
  /** On both node:http and the HTTP/2 compatibility API (not in @types/node for the latter). */
  flushHeaders?(): void;
}

const EARLY_HEADERS = createContextKey<EarlyHeaderTarget | undefined>(undefined, { description: "the HTTP response whose headers a stream may send at once" });

/** Makes `res` the response sendStreamHeaders flushes, for the call of these context values. */
export function allowEarlyHeaders(values: ContextValues, res: EarlyHeaderTarget): ContextValues {
  return values.set(EARLY_HEADERS, res);
}

/** Sends the call's response headers now: 200 and what `hctx.responseHeader` holds so far (headers added later are not sent). */
export function sendStreamHeaders(hctx: HandlerContext): void {
  const res = hctx.values.get(EARLY_HEADERS);
  if (!res || res.headersSent || res.destroyed || hctx.signal.aborted) return;
  const headers: OutgoingHttpHeaders = {};
  hctx.responseHeader.forEach((value, key) => {
    headers[key] = value;
  });
  res.writeHead(200, headers);
  res.flushHeaders?.();
}

/**
 * `res` for connect-node's `universalResponseToNodeResponse`, which calls writeHead before the
 * first chunk: once the headers are out, that call is skipped; everything else is `res` itself.
 */
export function headersOnce<R extends object>(res: R): R {
  if (!(res as unknown as EarlyHeaderTarget).headersSent) return res;
  return new Proxy(res, {
    get(target, property) {
      if (property === "writeHead") {
        const response = target as unknown as EarlyHeaderTarget;
        return (status: number, headers: OutgoingHttpHeaders) => (response.headersSent ? target : response.writeHead(status, headers));
      }
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}
