import type { IncomingHttpHeaders } from "node:http";
import { context, SpanStatusCode } from "@opentelemetry/api";
import { enterTrace } from "../../runtime/interceptor-tracing.js";

/**
 * Runs `handle` (one HTTP request at the edge) traced: a sampled request inside its SERVER span
 * `<method> <route>` (`http.route` the matched template, ended with the response's status when the
 * response closes), so the upstream call's CLIENT span is its child; a request that starts an
 * unsampled trace with that trace's `traceparent` in its headers, which the edge forwards
 * upstream; an unsampled `traceparent` as it came. See runtime/interceptor-tracing.ts.
 */
export function traceHttpRequest(
  req: { readonly method?: string | undefined; readonly headers: IncomingHttpHeaders; readonly httpVersion?: string },
  res: { once(event: "close", listener: () => void): unknown; readonly statusCode: number; readonly writableFinished: boolean },
  route: () => string,
  handle: () => void,
): void {
  let httpRoute = "";
  const entry = enterTrace(req.headers, () => `${req.method ?? "GET"} ${(httpRoute = safely(route))}`);
  if (entry === undefined) return handle();
  if (entry.span === undefined) {
    req.headers.traceparent = entry.traceparent;
    return handle();
  }
  const { span } = entry;
  span.setAttributes({ "http.request.method": req.method ?? "GET", "http.route": httpRoute, ...(req.httpVersion ? { "network.protocol.version": req.httpVersion } : {}) });
  res.once("close", () => {
    span.setAttribute("http.response.status_code", res.statusCode);
    if (res.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
    if (!res.writableFinished) span.setAttribute("umw.aborted", true);
    span.end();
  });
  context.with(entry.context, handle);
}

function safely(route: () => string): string {
  try {
    return route();
  } catch {
    return "_unmatched";
  }
}
