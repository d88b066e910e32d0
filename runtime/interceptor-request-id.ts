import { randomUUID } from "node:crypto";
import type { ClientInterceptor, ServerInterceptor } from "./interceptor.js";

export const REQUEST_ID_HEADER = "x-request-id";

/** Server: the caller's `x-request-id`, or a fresh one; it names the call in every log line. */
export const serverRequestId: ServerInterceptor = (next) => (req) => {
  req.context.requestId = req.context.headers[REQUEST_ID_HEADER] ?? randomUUID();
  return next(req);
};

/** Client: a call made while serving one carries the served call's request id, unless it has its own. */
export const clientRequestId: ClientInterceptor = (next) => (req) => {
  const requestId = req.context?.requestId;
  if (requestId && req.header.get(REQUEST_ID_HEADER).length === 0) req.header.set(REQUEST_ID_HEADER, requestId);
  return next(req);
};
