import { Code as ConnectCode, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import type { MethodImpl } from "@connectrpc/connect";
import type { DescMethod, DescMethodServerStreaming, DescMethodUnary, Message } from "@bufbuild/protobuf";
import type { Metadata, ServiceError } from "@grpc/grpc-js";
import { Code } from "../../runtime/errors.js";
import type { EdgeContext } from "./edge-context.js";
import { EdgeFailure, toEdgeFailure } from "./edge-failure.js";
import { metadataFromHeaders, REQUEST_ID, requestIdOf } from "./forwarded-headers.js";
import { checkRequestPayloads } from "./payload-check.js";
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
    const metadata = prepare(ctx, hctx);
    try {
      checkRequestPayloads(method.input, request, ctx.options.payloadLimits);
    } catch (error) {
      throw failureToConnectError(toEdgeFailure(error));
    }
    try {
      const { response, headers } = await upstream.unaryAsync(method, request, metadata, deadline(hctx, ctx.options.timeoutMs), hctx.signal);
      if (headers) passOn(ctx, headers, hctx.responseHeader);
      return response;
    } catch (error) {
      throw connectError(ctx, upstream, error);
    }
  };
}

function streamForwarder(ctx: EdgeContext, upstream: Upstream, method: DescMethod): MethodImpl<DescMethodServerStreaming> {
  return async function* (request, hctx) {
    const metadata = prepare(ctx, hctx);
    const call = upstream.serverStream(method, request, metadata, deadline(hctx, ctx.options.streamTimeoutMs));
    // Upstream headers come before the first message, in time to become the response headers.
    call.on("metadata", (headers: Metadata) => passOn(ctx, headers, hctx.responseHeader));
    const cancel = () => call.cancel();
    hctx.signal.addEventListener("abort", cancel, { once: true });
    try {
      for await (const message of call) yield message as Message;
    } catch (error) {
      if (ctx.shutdown.aborted) {
        throw connectError(ctx, upstream, EdgeFailure.of(Code.UNAVAILABLE, "SHUTTING_DOWN", "the edge is shutting down; reconnect"));
      }
      throw connectError(ctx, upstream, error);
    } finally {
      hctx.signal.removeEventListener("abort", cancel);
      call.cancel();
    }
  };
}

/** Request id (kept or made, and returned) and the forwarded headers as metadata. */
function prepare(ctx: EdgeContext, hctx: HandlerContext): Metadata {
  const requestId = requestIdOf(hctx.requestHeader.get(REQUEST_ID));
  hctx.responseHeader.set(REQUEST_ID, requestId);
  try {
    return metadataFromHeaders(hctx.requestHeader, ctx.options.forwardHeaders, requestId);
  } catch (error) {
    throw failureToConnectError(toEdgeFailure(error));
  }
}

/** The configured deadline, or the caller's own timeout (Connect / gRPC header) when shorter. */
function deadline(hctx: HandlerContext, configuredMs: number): number {
  const callerMs = hctx.timeoutMs();
  const ms = callerMs === undefined ? configuredMs : configuredMs > 0 ? Math.min(callerMs, configuredMs) : callerMs;
  return ms > 0 ? Date.now() + ms : Infinity;
}

function passOn(ctx: EdgeContext, metadata: Metadata, headers: Headers): void {
  for (const key of ctx.options.passthroughHeaders) {
    const values = metadata.get(key);
    for (const value of values) headers.append(key, String(value));
  }
}

function connectError(ctx: EdgeContext, upstream: Upstream, error: unknown): ConnectError {
  if (error instanceof ConnectError) return error;
  const failure = isServiceError(error)
    ? EdgeFailure.fromUpstream(error, upstream.service.typeName, ctx.options.passthroughHeaders)
    : toEdgeFailure(error);
  return failureToConnectError(failure);
}

export function failureToConnectError(failure: EdgeFailure): ConnectError {
  const error = new ConnectError(failure.status.message, failure.code as ConnectCode, failure.headers);
  // Details pass through as they came (type and bytes): nothing is lost, no registry needed.
  error.details = failure.status.details.map((detail) => ({
    type: detail.typeUrl.slice(detail.typeUrl.lastIndexOf("/") + 1),
    value: detail.value,
  }));
  return error;
}

function isServiceError(error: unknown): error is ServiceError {
  return error instanceof Error && typeof (error as ServiceError).code === "number" && "metadata" in error;
}
