import { randomUUID } from "node:crypto";
import type { ClientInterceptor, ServerInterceptor } from "./interceptor.js";

export const REQUEST_ID_HEADER = "x-request-id";

/** What a request id may be: 1 to 200 visible ASCII characters (it lands in headers, Kafka and log lines). */
const REQUEST_ID_SHAPE = /^[\x21-\x7e]{1,200}$/;

/** The caller's request id when it is a sane token, else a fresh one (the edge and every mesh server). */
export function requestIdOf(value: string | string[] | null | undefined): string {
  const candidate = Array.isArray(value) ? value[0] : value;
  return candidate && REQUEST_ID_SHAPE.test(candidate) ? candidate : randomUUID();
}

/** Server: the caller's `x-request-id`, or a fresh one; it names the call in every log line. */
export const serverRequestId: ServerInterceptor = (next) => (req) => {
  req.context.requestId = requestIdOf(req.context.headers[REQUEST_ID_HEADER]);
  return next(req);
};

/** Client: a call made while serving one carries the served call's request id, unless it has its own. */
export const clientRequestId: ClientInterceptor = (next) => (req) => {
  const requestId = req.context?.requestId;
  if (requestId && req.header.get(REQUEST_ID_HEADER).length === 0) req.header.set(REQUEST_ID_HEADER, requestId);
  return next(req);
};
