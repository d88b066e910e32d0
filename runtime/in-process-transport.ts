import { setMaxListeners } from "node:events";
import { Metadata, status as GrpcStatus, type ServiceError } from "@grpc/grpc-js";
import { clone, create, isMessage, type DescMessage, type DescMethod, type Message, type MessageInitShape } from "@bufbuild/protobuf";
import { runInCall } from "./call-context.js";
import { toRpcError } from "./errors.js";
import type { ClientRequest, ClientResponse, Next, ServerCallContext, ServerRequest, ServerResponse } from "./interceptor.js";
import type { Logger } from "./logger.js";
import { counter, defaultRegistry, type Counter, type Registry } from "./metrics.js";
import { methodPath } from "./service-definition.js";

/**
 * What a MeshServer offers callers in its own process: the composed server chain of each unary
 * method (request id, metrics, logging, errors, deadline, mesh authorization, policy, handler).
 */
export interface InProcessServer {
  readonly name: string;
  readonly log: Logger;
  /** Aborted when the server stops: the calls it serves see it as their signal. */
  readonly stopping: AbortSignal;
  readonly serviceNames: readonly string[];
  chainOf(method: DescMethod): Next<ServerRequest, ServerResponse> | undefined;
}

/** The client side of an in-process route: the transport and the mesh identity the caller would present over mTLS. */
export interface InProcessRoute {
  readonly transport: InProcessTransport;
  readonly peer: string;
}

/**
 * The services hosted in this process (`umw serve all`, `npm start`), by protobuf service name. A
 * mesh client whose service is here calls it directly: its own client chain, then the server's
 * chain and handler, with no HTTP/2, TLS or protobuf encoding in between (UMW_IN_PROCESS_TRANSPORT).
 * A service not (yet, or no longer) here is called over gRPC as usual.
 */
export class InProcessTransport {
  private readonly servers = new Map<string, InProcessServer>();
  private readonly calls: Counter<"service" | "method">;

  constructor(registry: Registry = defaultRegistry) {
    this.calls = counter(registry, {
      name: "umw_in_process_calls_total",
      help: "Mesh calls made in process (caller and service in one process: no HTTP/2, TLS or protobuf encoding).",
      labelNames: ["service", "method"],
    });
  }

  register(server: InProcessServer): void {
    // Every call in flight listens on the server's stop (InProcessCallContext.signal): no warning at 11.
    setMaxListeners(0, server.stopping);
    for (const service of server.serviceNames) this.servers.set(service, server);
  }

  /** A stopping server leaves first: calls made meanwhile go over gRPC (and get its refusal). */
  unregister(server: InProcessServer): void {
    for (const service of server.serviceNames) if (this.servers.get(service) === server) this.servers.delete(service);
  }

  /** The terminal of a client chain for `method`: in process while its service is here, else `overNetwork`. */
  terminal(method: DescMethod, peer: string, overNetwork: Next<ClientRequest, ClientResponse>): Next<ClientRequest, ClientResponse> {
    if (method.methodKind !== "unary") return overNetwork;
    const service = method.parent.typeName;
    const labels = { service, method: method.name };
    return (req) => {
      const server = this.servers.get(service);
      const chain = server?.chainOf(method);
      if (!server || !chain) return overNetwork(req);
      this.calls.inc(labels);
      return callInProcess(server, chain, method, peer, req);
    };
  }
}

/**
 * One unary call through a server chain of this process, as the network would carry it: the
 * request is a copy (the handler cannot change the caller's message), the deadline and the
 * caller's cancellation end the call with DEADLINE_EXCEEDED / CANCELLED at the caller and abort
 * the handler's signal, and failures reach the client chain as the grpc-js error the wire would
 * have produced (status, google.rpc.Status details, trailers). The response message is shared
 * with the handler, as the edge's decoded-response memo already shares messages: read-only.
 */
function callInProcess(server: InProcessServer, chain: Next<ServerRequest, ServerResponse>, method: DescMethod, peer: string, req: ClientRequest): Promise<ClientResponse> {
  const deadline = req.deadline;
  const now = Date.now();
  if (deadline <= now) return Promise.reject(wireFailure(GrpcStatus.DEADLINE_EXCEEDED, "Deadline exceeded", new Metadata()));
  if (req.signal?.aborted) return Promise.reject(wireFailure(GrpcStatus.CANCELLED, "Cancelled on client", new Metadata()));
  const responseHeaders = new Metadata();
  const ctx = new InProcessCallContext(method, req.header, peer, Number.isFinite(deadline) ? new Date(deadline) : undefined, server.stopping, server.log, responseHeaders);
  const message = requestCopy(method.input, req.message);
  return new Promise<ClientResponse>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const { signal } = req;
    const end = () => {
      if (timer) clearTimeout(timer);
      signal?.removeEventListener("abort", cancelled);
    };
    const cancelled = () => {
      end();
      ctx.cancel();
      reject(wireFailure(GrpcStatus.CANCELLED, "Cancelled on client", new Metadata()));
    };
    signal?.addEventListener("abort", cancelled, { once: true });
    if (Number.isFinite(deadline)) {
      timer = setTimeout(() => {
        end();
        ctx.cancel(true);
        reject(wireFailure(GrpcStatus.DEADLINE_EXCEEDED, "Deadline exceeded", new Metadata()));
      }, deadline - now);
    }
    runInCall(ctx, chain, { method, message, context: ctx }).then(
      (response) => {
        end();
        ctx.settle();
        if (response.stream) {
          reject(wireFailure(GrpcStatus.INTERNAL, `${methodPath(method)} answered a stream to a unary call`, new Metadata()));
          return;
        }
        req.onHeader?.(responseHeaders);
        resolve({ stream: false, message: responseMessage(method.output, response.message), header: responseHeaders });
      },
      (error: unknown) => {
        end();
        ctx.settle();
        const rpcError = toRpcError(error);
        const failure = rpcError.toServiceError();
        failure.metadata!.merge(responseHeaders);
        reject(wireFailure(failure.code!, failure.details!, failure.metadata!));
      },
    );
  });
}

/** A deep copy of the caller's request (a message, or its init shape). */
function requestCopy(schema: DescMessage, value: unknown): Message {
  if (isMessage(value, schema)) return clone(schema, value);
  return clone(schema, create(schema, value as MessageInitShape<DescMessage>));
}

/** Handlers may answer init shapes; the caller gets a message, as it would from the decoder. */
function responseMessage(schema: DescMessage, value: unknown): Message {
  return isMessage(value, schema) ? value : create(schema, value as MessageInitShape<DescMessage>);
}

/** The error grpc-js would hand the client for this status (clientErrors turns it into an RpcError). */
export function wireFailure(code: number, details: string, metadata: Metadata): ServiceError {
  const stackTraceLimit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return Object.assign(new Error(`${code} ${GrpcStatus[code]}: ${details}`), { code, details, metadata });
  } finally {
    Error.stackTraceLimit = stackTraceLimit;
  }
}

/**
 * The server's view of an in-process call: what GrpcCallContext (runtime/server.ts) gives a
 * handler, with the caller's mesh identity as the peer instead of its certificate.
 */
class InProcessCallContext implements ServerCallContext {
  requestId = "";
  private headerRecord: Record<string, string> | undefined;
  /** Made on first use (most handlers pass the signal on and never see it fire). */
  private aborter: AbortController | undefined;
  private followsStop = false;
  /** Set when the caller gave up before anyone asked for the signal. */
  private gaveUp: { reason: unknown } | undefined;
  private logger: Logger | undefined;
  private settled = false;
  private readonly onStop = () => this.aborter?.abort(this.stopping.reason);

  constructor(
    private readonly method: DescMethod,
    private readonly metadata: Metadata,
    readonly peer: string,
    public deadline: Date | undefined,
    private readonly stopping: AbortSignal,
    private readonly baseLog: Logger,
    private readonly responseHeaders: Metadata,
  ) {}

  get headers(): Readonly<Record<string, string>> {
    if (!this.headerRecord) {
      const headers: Record<string, string> = {};
      for (const [key, value] of Object.entries(this.metadata.getMap())) {
        if (typeof value === "string") headers[key] = value;
      }
      this.headerRecord = headers;
    }
    return this.headerRecord;
  }

  /**
   * The caller's cancellation and deadline (the transport's timer calls `cancel`), and the server's
   * stop. One controller and one listener on the stop signal, not AbortSignal.any: that one costs
   * a composite signal per call, which the hot path of every read would pay.
   */
  get signal(): AbortSignal {
    if (!this.aborter) {
      this.aborter = new AbortController();
      if (this.gaveUp) this.aborter.abort(this.gaveUp.reason);
      else if (this.stopping.aborted) this.aborter.abort(this.stopping.reason);
      else if (!this.settled) {
        this.stopping.addEventListener("abort", this.onStop, { once: true });
        this.followsStop = true;
      }
    }
    return this.aborter.signal;
  }

  get log(): Logger {
    this.logger ??= this.baseLog.child({ requestId: this.requestId, method: methodPath(this.method) });
    return this.logger;
  }

  readonly setHeader = (key: string, value: string): void => {
    this.responseHeaders.set(key, value);
  };

  /** The caller gave up: the handler's signal fires (a TimeoutError at the deadline, as AbortSignal.timeout would). */
  cancel(deadline = false): void {
    if (this.settled) return;
    const reason = deadline ? new DOMException("The operation was aborted due to timeout", "TimeoutError") : new DOMException("The operation was aborted", "AbortError");
    if (this.aborter) this.aborter.abort(reason);
    else this.gaveUp = { reason };
  }

  settle(): void {
    this.settled = true;
    if (this.followsStop) this.stopping.removeEventListener("abort", this.onStop);
    this.followsStop = false;
  }
}

