import { once } from "node:events";
import {
  Metadata,
  Server,
  type sendUnaryData,
  type ServerCredentials,
  type ServerUnaryCall,
  type ServerWritableStream,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import type { DescMessage, DescMethod, DescService, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import { runInCall } from "./call-context.js";
import { Code, invalidArgument, RpcError, toRpcError } from "./errors.js";
import type { Config } from "./config.js";
import { composeChain, type Next, type ServerCallContext, type ServerInterceptor, type ServerRequest, type ServerResponse } from "./interceptor.js";
import { serverDeadline } from "./interceptor-deadline.js";
import { serverErrors } from "./interceptor-errors.js";
import { serverLogging } from "./interceptor-logging.js";
import { serverMeshAuthorization } from "./interceptor-mesh-authorization.js";
import { prometheusCallMetrics, serverMetrics, type CallMetrics } from "./interceptor-metrics.js";
import { serverRequestId } from "./interceptor-request-id.js";
import { serverTracing } from "./interceptor-tracing.js";
import type { Logger } from "./logger.js";
import { addReflection } from "./reflection.js";
import {
  grpcServiceDefinition,
  methodPath,
  type EncodingStreamingHandler,
  type ServableHandlers,
  type UnaryHandler,
  UndecodableRequest,
} from "./service-definition.js";
import type { MeshAuthorization } from "./mesh-authorization.js";
import type { InProcessServer } from "./in-process-transport.js";
import { peerIdentity } from "./tls.js";

export interface MeshServerOptions {
  /** Service name: reported by health checks and in every log line. */
  readonly name: string;
  readonly host: string;
  /** 0 picks a free port; start() returns the bound one. */
  readonly port: number;
  readonly credentials: ServerCredentials;
  readonly log: Logger;
  /** How long stop() lets in-flight calls finish before cancelling them. */
  readonly drainTimeoutMs?: number;
  /** Connection and deadline bounds; the defaults are those of runtime/config.ts. */
  readonly limits?: Partial<MeshServerLimits>;
  /**
   * Run inside the default chain (tracing, request id, metrics, logging, error mapping, deadline, mesh authorization), in this
   * order, around every handler: authentication, authorization, tracing and the like.
   */
  readonly interceptors?: readonly ServerInterceptor[];
  /** Where each finished call is reported; default: `rpc_server_*` in the process registry (runtime/metrics.ts). */
  readonly metrics?: CallMetrics;
  /** Which mesh identity may call which method and assert a principal; unset = no check (in-process and test servers). */
  readonly authorization?: MeshAuthorization;
}

/** What bounds a mesh server's connections and calls (see the settings of the same names in runtime/config.ts). */
export interface MeshServerLimits {
  /** A call's deadline is never later than this from its start, whatever grpc-timeout asked for. */
  readonly maxCallTimeoutMs: number;
  readonly maxConnectionIdleMs: number;
  /** 0: no limit. */
  readonly maxConnectionAgeMs: number;
  readonly maxConnectionAgeGraceMs: number;
  readonly keepaliveTimeMs: number;
  readonly keepaliveTimeoutMs: number;
}

export const DEFAULT_MESH_SERVER_LIMITS: MeshServerLimits = {
  maxCallTimeoutMs: 3_600_000,
  maxConnectionIdleMs: 300_000,
  maxConnectionAgeMs: 0,
  maxConnectionAgeGraceMs: 60_000,
  keepaliveTimeMs: 60_000,
  keepaliveTimeoutMs: 20_000,
};

/** The mesh server limits of a config. */
export function meshServerLimits(config: Config): MeshServerLimits {
  return {
    maxCallTimeoutMs: config.maxCallTimeoutMs,
    maxConnectionIdleMs: config.grpcMaxConnectionIdleMs,
    maxConnectionAgeMs: config.grpcMaxConnectionAgeMs,
    maxConnectionAgeGraceMs: config.grpcMaxConnectionAgeGraceMs,
    keepaliveTimeMs: config.grpcKeepaliveTimeMs,
    keepaliveTimeoutMs: config.grpcKeepaliveTimeoutMs,
  };
}

/** The request as the handler takes it; one that did not decode is the caller's mistake (INVALID_ARGUMENT). */
function decoded(method: DescMethod, message: unknown): MessageShape<DescMessage> {
  if (message instanceof UndecodableRequest) {
    throw invalidArgument("INVALID_MESSAGE", `the request is not a valid ${method.input.typeName}: ${message.reason}`);
  }
  return message as MessageShape<DescMessage>;
}

type AnyCall = ServerUnaryCall<unknown, unknown> | ServerWritableStream<unknown, unknown>;

/**
 * One grpc-js server: typed protobuf-es handlers behind an interceptor chain (tracing, request id, metrics,
 * logging, error mapping, deadline, mesh authorization, then the caller's own), Health (Check and Watch), reflection,
 * and a graceful stop that drains calls and ends streams within a bound.
 */
export class MeshServer {
  private readonly server: Server;
  private readonly limits: MeshServerLimits;
  private readonly interceptors: readonly ServerInterceptor[];
  private readonly health = new HealthImplementation({ "": "NOT_SERVING" });
  private readonly services: DescService[] = [];
  private readonly stopping = new AbortController();
  private readonly unaryChains = new Map<DescMethod, Next<ServerRequest, ServerResponse>>();
  private offered: InProcessServer | undefined;
  private port = 0;

  constructor(private readonly options: MeshServerOptions) {
    const limits = (this.limits = { ...DEFAULT_MESH_SERVER_LIMITS, ...options.limits });
    this.interceptors = [
      serverTracing,
      serverRequestId,
      serverMetrics(options.metrics ?? prometheusCallMetrics("server")),
      serverLogging(options.log),
      serverErrors,
      serverDeadline(limits.maxCallTimeoutMs),
      ...(options.authorization ? [serverMeshAuthorization(options.authorization)] : []),
      ...(options.interceptors ?? []),
    ];
    this.server = new Server({
      "grpc.keepalive_permit_without_calls": 1,
      "grpc.keepalive_time_ms": limits.keepaliveTimeMs,
      "grpc.keepalive_timeout_ms": limits.keepaliveTimeoutMs,
      "grpc.max_connection_idle_ms": limits.maxConnectionIdleMs,
      ...(limits.maxConnectionAgeMs > 0
        ? { "grpc.max_connection_age_ms": limits.maxConnectionAgeMs, "grpc.max_connection_age_grace_ms": limits.maxConnectionAgeGraceMs }
        : {}),
    });
    this.health.addToServer(this.server);
  }

  get address(): string {
    return `${this.options.host}:${this.port}`;
  }

  addService<S extends DescService>(service: S, handlers: ServableHandlers<S>): this {
    const implementation: UntypedServiceImplementation = {};
    for (const method of service.methods) {
      const handler = (handlers as Record<string, unknown>)[method.localName];
      if (typeof handler !== "function") throw new Error(`${methodPath(method)} has no handler`);
      implementation[method.localName] =
        method.methodKind === "server_streaming"
          ? this.serverStreaming(method, handler as EncodingStreamingHandler<DescMessage, DescMessage>)
          : this.unary(method, handler as UnaryHandler<DescMessage, DescMessage>);
    }
    this.server.addService(grpcServiceDefinition(service), implementation);
    this.services.push(service);
    return this;
  }

  async start(): Promise<number> {
    addReflection(this.server, this.services);
    this.port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(`${this.options.host}:${this.options.port}`, this.options.credentials, (error, port) =>
        error ? reject(new Error(`${this.options.name}: cannot listen on ${this.options.host}:${this.options.port}: ${error.message}`)) : resolve(port),
      ),
    );
    this.setServing(true);
    this.options.log.info({ address: this.address }, "grpc server listening");
    return this.port;
  }

  setServing(serving: boolean): void {
    const status = serving ? "SERVING" : "NOT_SERVING";
    this.health.setStatus("", status);
    for (const service of this.services) this.health.setStatus(service.typeName, status);
  }

  /** Stop accepting, end streams, let unary calls finish, and cancel whatever is left at the bound. */
  async stop(): Promise<void> {
    this.setServing(false);
    this.stopping.abort();
    const drained = new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
    const bound = this.options.drainTimeoutMs ?? 10_000;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), bound)));
    if ((await Promise.race([drained, timedOut])) === "timeout") {
      this.options.log.warn({ boundMs: bound }, "drain bound reached; cancelling remaining calls");
      this.server.forceShutdown();
    }
    clearTimeout(timer);
  }

  /** This server's unary chains for callers in its own process (runtime/in-process-transport.ts). */
  inProcess(): InProcessServer {
    const services = this.services;
    this.offered ??= {
      name: this.options.name,
      log: this.options.log,
      stopping: this.stopping.signal,
      get serviceNames() {
        return services.map((service) => service.typeName);
      },
      chainOf: (method) => this.unaryChains.get(method),
    };
    return this.offered;
  }

  /** grpc-js handler of a unary method: the chain, composed once, then the handler. */
  private unary(method: DescMethod, handler: UnaryHandler<DescMessage, DescMessage>) {
    const chain = composeChain<ServerRequest, ServerResponse>(this.interceptors, async (req) => ({
      stream: false,
      message: await handler(decoded(method, req.message), req.context),
    }));
    this.unaryChains.set(method, chain);
    const stopping = this.stopping.signal;
    const log = this.options.log;
    return (call: ServerUnaryCall<MessageShape<DescMessage>, unknown>, callback: sendUnaryData<unknown>) => {
      const headers = new Metadata();
      const ctx = new GrpcCallContext(method, call, headers, stopping, log);
      runInCall(ctx, chain, { method, message: call.request, context: ctx }).then(
        (response) => {
          ctx.settle();
          call.sendMetadata(headers);
          callback(null, response.message);
        },
        (error: unknown) => {
          ctx.settle();
          callback(withHeaders(toRpcError(error), headers));
        },
      );
    };
  }

  /** grpc-js handler of a server-streaming method: the chain, composed once, then the handler's messages, written with flow control. */
  private serverStreaming(method: DescMethod, handler: EncodingStreamingHandler<DescMessage, DescMessage>) {
    const stopping = this.stopping.signal;
    const name = this.options.name;
    const log = this.options.log;
    const chain = composeChain<ServerRequest, ServerResponse>(this.interceptors, async (req) => ({
      stream: true,
      message: untilAborted(req.context as GrpcCallContext, handler(decoded(method, req.message), req.context), stopping, name),
    }));
    const pump = async (call: ServerWritableStream<MessageShape<DescMessage>, unknown>, ctx: GrpcCallContext) => {
      const response = await chain({ method, message: call.request, context: ctx });
      const messages = response.stream ? response.message : [response.message];
      for await (const message of messages) {
        if (!ctx.headersSent) ctx.sendHeaders();
        // Respect HTTP/2 flow control: wait for the peer to take what was written.
        if (!call.write(message as MessageInitShape<DescMessage>)) {
          await once(call, "drain", { signal: ctx.signal }).catch(() => undefined);
        }
      }
    };
    return (call: ServerWritableStream<MessageShape<DescMessage>, unknown>) => {
      const headers = new Metadata();
      const ctx = new GrpcCallContext(method, call, headers, stopping, log);
      runInCall(ctx, pump, call, ctx).then(
        () => {
          ctx.settle();
          if (!call.cancelled) call.end();
        },
        (error: unknown) => {
          ctx.settle();
          if (!call.cancelled) call.emit("error", withHeaders(toRpcError(error), ctx.headersSent ? new Metadata() : headers));
        },
      );
    };
  }
}

/**
 * The handler's view of a grpc-js call. Made on every call, so whatever a handler may not need
 * (the header record, the abort signal, the peer certificate, the child logger) is made on first
 * use. Request id and deadline are settled by the interceptors before the handler runs.
 */
class GrpcCallContext implements ServerCallContext {
  requestId = "";
  deadline: Date | undefined;
  headersSent = false;
  private headerRecord: Record<string, string> | undefined;
  private peerName: { value: string | undefined } | undefined;
  private abortSignal: AbortSignal | undefined;
  private cancelled: AbortController | undefined;
  private logger: Logger | undefined;
  private settled = false;
  private readonly onCancelled = () => this.cancelled?.abort();

  constructor(
    private readonly method: DescMethod,
    readonly call: AnyCall,
    private readonly responseHeaders: Metadata,
    private readonly stopping: AbortSignal,
    private readonly baseLog: Logger,
  ) {
    const deadline = call.getDeadline();
    if (deadline instanceof Date) this.deadline = deadline;
    else if (Number.isFinite(deadline)) this.deadline = new Date(deadline);
    call.once("cancelled", this.onCancelled);
  }

  get headers(): Readonly<Record<string, string>> {
    if (!this.headerRecord) {
      const headers: Record<string, string> = {};
      for (const [key, value] of Object.entries(this.call.metadata.getMap())) {
        if (typeof value === "string") headers[key] = value;
      }
      this.headerRecord = headers;
    }
    return this.headerRecord;
  }

  get peer(): string | undefined {
    this.peerName ??= { value: peerIdentity(this.call) };
    return this.peerName.value;
  }

  get signal(): AbortSignal {
    if (!this.abortSignal) {
      const cancelled = (this.cancelled = new AbortController());
      if (this.call.cancelled && !this.settled) cancelled.abort();
      // The deadline (as the deadline interceptor settled it) aborts the handler's work too, with a TimeoutError.
      const signals = [cancelled.signal, this.stopping];
      if (this.deadline) signals.push(AbortSignal.timeout(Math.max(0, this.deadline.getTime() - Date.now())));
      this.abortSignal = AbortSignal.any(signals);
    }
    return this.abortSignal;
  }

  get log(): Logger {
    this.logger ??= this.baseLog.child({ requestId: this.requestId, method: methodPath(this.method) });
    return this.logger;
  }

  /** An own function, not a method: handlers pass `ctx.setHeader` on detached. */
  readonly setHeader = (key: string, value: string): void => {
    this.responseHeaders.set(key, value);
  };

  /** Streaming calls: the headers go out now (grpc-js would send them with the first message only). */
  readonly sendHeaders = (): void => {
    if (this.headersSent || this.call.cancelled) return;
    this.headersSent = true;
    this.call.sendMetadata(this.responseHeaders);
  };

  /** grpc-js emits "cancelled" after every finished call too: once the handler is done, that is not news. */
  settle(): void {
    this.settled = true;
    this.call.removeListener("cancelled", this.onCancelled);
  }
}

/**
 * A handler's messages until the call is aborted; a stream cut short by shutdown ends UNAVAILABLE, so
 * clients reconnect. A plain iterator (one `then` per message) rather than an async generator: it
 * runs once per message of every stream.
 */
function untilAborted(ctx: GrpcCallContext, messages: AsyncIterable<unknown>, stopping: AbortSignal, name: string): AsyncIterable<unknown> {
  return { [Symbol.asyncIterator]: () => new UntilAborted(ctx, messages[Symbol.asyncIterator](), stopping, name) };
}

class UntilAborted implements AsyncIterator<unknown> {
  private finished = false;

  constructor(
    private readonly ctx: GrpcCallContext,
    private readonly inner: AsyncIterator<unknown>,
    private readonly stopping: AbortSignal,
    private readonly name: string,
  ) {}

  next(): Promise<IteratorResult<unknown>> {
    if (this.finished) return Promise.resolve({ done: true, value: undefined });
    return this.inner.next().then(this.received, this.failed);
  }

  async return(value?: unknown): Promise<IteratorResult<unknown>> {
    if (!this.finished) {
      this.finished = true;
      await this.inner.return?.(value);
    }
    return { done: true, value };
  }

  private readonly received = (result: IteratorResult<unknown>): IteratorResult<unknown> | Promise<IteratorResult<unknown>> => {
    if (!result.done && !this.ctx.signal.aborted) return result;
    return this.finish(result);
  };

  private async finish(result: IteratorResult<unknown>): Promise<IteratorResult<unknown>> {
    // Aborted with a message in hand: drop it and let the handler finish (its finally blocks).
    if (!result.done) await this.inner.return?.(undefined);
    this.finished = true;
    if (this.stopping.aborted && !this.ctx.call.cancelled) {
      throw new RpcError(Code.UNAVAILABLE, "SHUTTING_DOWN", `${this.name} is shutting down; reconnect`);
    }
    return { done: true, value: undefined };
  }

  private readonly failed = (error: unknown): never => {
    this.finished = true;
    throw error;
  };
}

/** Response headers set before a failure travel as trailers on the error. */
function withHeaders(error: RpcError, headers: Metadata) {
  const serviceError = error.toServiceError();
  serviceError.metadata?.merge(headers);
  return serviceError;
}
