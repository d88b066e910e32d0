import { Code as ConnectCode, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import type { MethodImpl } from "@connectrpc/connect";
import type { DescMethod, DescMethodServerStreaming, DescMethodUnary } from "@bufbuild/protobuf";
import type { Metadata } from "@grpc/grpc-js";
import { Code, RpcError } from "../../runtime/errors.js";
import type { EdgeContext } from "./edge-context.js";
import { edgeFailureOf, upstreamFailure } from "./edge-failure.js";
import { authenticate, checkTenant } from "./authenticator.js";
import { metadataFromHeaders, REQUEST_ID, requestIdOf, setPrincipal } from "./forwarded-headers.js";
import type { Principal } from "../../runtime/principal.js";
import { checkRequestPayloads } from "./payload-check.js";
import { admit, httpRequestOf, requestIsFreshRead, requestTenant, type Admission } from "./rate-limit.js";
import { sendStreamHeaders } from "./stream-response.js";
import type { Upstream } from "./upstream.js";

/**
 * The upstream services for browsers and other clients over Connect, gRPC-web and gRPC
 * (connect-node): every unary and server-streaming method forwards to the internal grpc-js
 * channel with the same header forwarding, timeout and error mapping as REST. Upstream failures
 * become ConnectErrors with the upstream's code, message, all Status details (ErrorInfo first of
 * them) and passed-on metadata such as umw-cache-status.
 */
export function connectRoutes(ctx: EdgeContext): (router: ConnectRouter) => void {
  return (router) => {
    for (const upstream of ctx.upstreams.values()) {
      for (const method of upstream.service.methods) {
        if (method.methodKind === "unary") router.rpc(method as DescMethodUnary, unaryForwarder(ctx, upstream, method));
        else if (method.methodKind === "server_streaming") router.rpc(method as DescMethodServerStreaming, streamForwarder(ctx, upstream, method));
      }
    }
  };
}

function unaryForwarder(ctx: EdgeContext, upstream: Upstream, method: DescMethod): MethodImpl<DescMethodUnary> {
  return async (request, hctx) => {
    const { metadata: headers, principal } = await prepare(ctx, hctx, request);
    try {
      checkRequestPayloads(method.input, request, ctx.options.payloadLimits);
    } catch (error) {
      throw failureToConnectError(edgeFailureOf(error));
    }
    await admitCall(ctx, method, request, hctx, principal);
    try {
      const response = await upstream.client.unary(method, request, { headers, deadline: deadline(hctx, ctx.options.timeoutMs), signal: hctx.signal });
      if (response.header) passOn(ctx, response.header, hctx.responseHeader);
      return response.message;
    } catch (error) {
      throw connectError(ctx, upstream, deadlineExpired(hctx) ? timedOut(upstream) : error);
    }
  };
}

function streamForwarder(ctx: EdgeContext, upstream: Upstream, method: DescMethod): MethodImpl<DescMethodServerStreaming> {
  return async function* (request, hctx) {
    const { metadata: headers, principal } = await prepare(ctx, hctx, request);
    await admitCall(ctx, method, request, hctx, principal);
    const messages = upstream.client.serverStream(method, request, {
      headers,
      deadline: deadline(hctx, ctx.options.streamTimeoutMs),
      signal: hctx.signal,
      // The upstream sends its headers once it accepted the stream, maybe long before a first message:
      // they become the response headers, and go to the client now (stream-response.ts).
      onHeaders: (headers) => {
        passOn(ctx, headers, hctx.responseHeader);
        sendStreamHeaders(hctx);
      },
    });
    try {
      yield* messages;
    } catch (error) {
      if (ctx.shutdown.aborted) {
        throw connectError(ctx, upstream, new RpcError(Code.UNAVAILABLE, "SHUTTING_DOWN", "the edge is shutting down; reconnect"));
      }
      throw connectError(ctx, upstream, deadlineExpired(hctx) ? timedOut(upstream) : error);
    }
  };
}

/** Charges the call to its rate-limit buckets (by the caller's principal): a refusal is thrown, the RateLimit headers join the response's. */
async function admitCall(ctx: EdgeContext, method: DescMethod, request: unknown, hctx: HandlerContext, principal: Principal | undefined): Promise<void> {
  const rateLimit = ctx.options.rateLimit;
  const req = httpRequestOf(hctx);
  if (!rateLimit || !req) return;
  let admission: Admission;
  try {
    admission = await admit(rateLimit, req, `${method.parent.typeName}/${method.name}`, requestTenant(request), requestIsFreshRead(request), principal);
  } catch (error) {
    throw failureToConnectError(edgeFailureOf(error));
  }
  if (admission.refusal) throw failureToConnectError(admission.refusal);
  for (const [name, value] of Object.entries(admission.headers)) hctx.responseHeader.set(name, value);
}

/** Request id (kept or made, and returned), the caller authenticated, and the forwarded headers and principal as metadata. */
async function prepare(ctx: EdgeContext, hctx: HandlerContext, request: unknown): Promise<{ metadata: Metadata; principal: Principal | undefined }> {
  const requestId = requestIdOf(hctx.requestHeader.get(REQUEST_ID));
  hctx.responseHeader.set(REQUEST_ID, requestId);
  try {
    const principal = await authenticate(ctx.options.auth, hctx.requestHeader.get("authorization"));
    checkTenant(principal, (request as { tenant?: unknown }).tenant);
    const metadata = metadataFromHeaders(hctx.requestHeader, ctx.options.forwardHeaders, requestId);
    setPrincipal(metadata, principal);
    return { metadata, principal };
  } catch (error) {
    throw failureToConnectError(edgeFailureOf(error));
  }
}

/** The configured deadline, or the caller's own timeout (Connect / gRPC header) when shorter. */
function deadline(hctx: HandlerContext, configuredMs: number): number {
  const callerMs = hctx.timeoutMs();
  const ms = callerMs === undefined ? configuredMs : configuredMs > 0 ? Math.min(callerMs, configuredMs) : callerMs;
  return ms > 0 ? Date.now() + ms : Infinity;
}

/**
 * The caller's own deadline passed: connect-node aborts the handler's signal, which cancels the
 * upstream call (CANCELLED) a moment before grpc-js would report DEADLINE_EXCEEDED. Either way the
 * caller learns its deadline expired.
 */
function deadlineExpired(hctx: HandlerContext): boolean {
  const reason: unknown = hctx.signal.reason;
  if (hctx.signal.aborted && reason instanceof ConnectError) return reason.code === ConnectCode.DeadlineExceeded;
  // Either timer may fire first (grpc-js' for the upstream call, connect-node's for the caller): the clock decides.
  const left = hctx.timeoutMs();
  return left !== undefined && left <= 0;
}

function timedOut(upstream: Upstream): RpcError {
  const service = upstream.service.typeName;
  return new RpcError(Code.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED", "the call's deadline expired", { service });
}

function passOn(ctx: EdgeContext, metadata: Metadata, headers: Headers): void {
  for (const key of ctx.options.passthroughHeaders) {
    const values = metadata.get(key);
    for (const value of values) headers.append(key, String(value));
  }
}

function connectError(ctx: EdgeContext, upstream: Upstream, error: unknown): ConnectError {
  if (error instanceof ConnectError) return error;
  return failureToConnectError(upstreamFailure(error, upstream.service.typeName, ctx.options.passthroughHeaders));
}

/** The Connect boundary: an RpcError as the ConnectError connect-node answers with. */
export function failureToConnectError(failure: RpcError): ConnectError {
  const status = failure.toStatus();
  const error = new ConnectError(status.message, status.code as ConnectCode, failure.headers);
  // Details pass through as they came (type and bytes): nothing is lost, no registry needed.
  error.details = status.details.map((detail) => ({
    type: detail.typeUrl.slice(detail.typeUrl.lastIndexOf("/") + 1),
    value: detail.value,
  }));
  return error;
}
