import { randomUUID } from "node:crypto";
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
import { runInCall, type CallContext } from "./call-context.js";
import { Code, RpcError, toRpcError } from "./errors.js";
import type { Config } from "./config.js";
import type { Logger } from "./logger.js";
import { addReflection } from "./reflection.js";
import {
  grpcServiceDefinition,
  methodPath,
  type ServerStreamingHandler,
  type ServiceHandlers,
  type UnaryHandler,
} from "./service-definition.js";
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

type AnyCall = ServerUnaryCall<unknown, unknown> | ServerWritableStream<unknown, unknown>;

/**
 * One grpc-js server: typed protobuf-es handlers, Health (Check and Watch), reflection, request ids,
 * deadline propagation, and a graceful stop that drains calls and ends streams within a bound.
 */
export class MeshServer {
  private readonly server: Server;
  private readonly limits: MeshServerLimits;
  private readonly health = new HealthImplementation({ "": "NOT_SERVING" });
  private readonly services: DescService[] = [];
  private readonly stopping = new AbortController();
  private port = 0;

  constructor(private readonly options: MeshServerOptions) {
    const limits = (this.limits = { ...DEFAULT_MESH_SERVER_LIMITS, ...options.limits });
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

  addService<S extends DescService>(service: S, handlers: ServiceHandlers<S>): this {
    const implementation: UntypedServiceImplementation = {};
    for (const method of service.methods) {
      const handler = (handlers as Record<string, unknown>)[method.localName];
      if (typeof handler !== "function") throw new Error(`${methodPath(method)} has no handler`);
      implementation[method.localName] =
        method.methodKind === "server_streaming"
          ? this.serverStreaming(method, handler as ServerStreamingHandler<DescMessage, DescMessage>)
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

  /**
   * The handler's view of the call. Built on every call, so whatever a handler may not need (the
   * abort signal, the peer certificate, the child logger) is made on first use.
   */
  private context(method: DescMethod, call: AnyCall, responseHeaders: Metadata): CallContext & { settle(): void } {
    const headers: Record<string, string> = {};
    for (const [key, value] of Object.entries(call.metadata.getMap())) {
      if (typeof value === "string") headers[key] = value;
    }
    const requestId = headers["x-request-id"] ?? randomUUID();
    const deadline = clampDeadline(call.getDeadline(), this.limits.maxCallTimeoutMs);
    const stopping = this.stopping.signal;
    const baseLog = this.options.log;
    let cancelled: AbortController | undefined;
    let signal: AbortSignal | undefined;
    let log: Logger | undefined;
    let peer: { value: string | undefined } | undefined;
    let settled = false;
    const onCancelled = () => cancelled?.abort();
    call.once("cancelled", onCancelled);
    return {
      requestId,
      deadline: Number.isFinite(deadline) ? new Date(deadline) : undefined,
      get peer() {
        peer ??= { value: peerIdentity(call) };
        return peer.value;
      },
      headers,
      get signal() {
        if (!signal) {
          cancelled = new AbortController();
          if (call.cancelled && !settled) cancelled.abort();
          // The deadline aborts the handler's work too (with a TimeoutError), not only grpc-js's answer.
          const signals = [cancelled.signal, stopping];
          if (Number.isFinite(deadline)) signals.push(AbortSignal.timeout(Math.max(0, deadline - Date.now())));
          signal = AbortSignal.any(signals);
        }
        return signal;
      },
      get log() {
        log ??= baseLog.child({ requestId, method: methodPath(method) });
        return log;
      },
      setHeader: (key, value) => responseHeaders.set(key, value),
      // grpc-js emits "cancelled" after every finished call too: once the handler is done, that is not news.
      settle: () => {
        settled = true;
        call.removeListener("cancelled", onCancelled);
      },
    };
  }

  private unary(method: DescMethod, handler: UnaryHandler<DescMessage, DescMessage>) {
    return (call: ServerUnaryCall<MessageShape<DescMessage>, unknown>, callback: sendUnaryData<unknown>) => {
      const headers = new Metadata();
      const ctx = this.context(method, call, headers);
      const started = performance.now();
      runInCall(ctx, () => handler(call.request, ctx)).then(
        (response) => {
          ctx.settle();
          call.sendMetadata(headers);
          callback(null, response);
          this.logDone(ctx, started, Code.OK);
        },
        (error: unknown) => {
          ctx.settle();
          const rpcError = this.failure(ctx, error);
          callback(withHeaders(rpcError, headers));
          this.logDone(ctx, started, rpcError.code);
        },
      );
    };
  }

  private serverStreaming(method: DescMethod, handler: ServerStreamingHandler<DescMessage, DescMessage>) {
    return (call: ServerWritableStream<MessageShape<DescMessage>, unknown>) => {
      const headers = new Metadata();
      const ctx = this.context(method, call, headers);
      const started = performance.now();
      let headersSent = false;
      const pump = async () => {
        for await (const message of handler(call.request, ctx)) {
          if (ctx.signal.aborted) break;
          if (!headersSent) {
            call.sendMetadata(headers);
            headersSent = true;
          }
          // Respect HTTP/2 flow control: wait for the peer to take what was written.
          if (!call.write(message as MessageInitShape<DescMessage>)) {
            await once(call, "drain", { signal: ctx.signal }).catch(() => undefined);
          }
        }
        if (this.stopping.signal.aborted && !call.cancelled) {
          throw new RpcError(Code.UNAVAILABLE, "SHUTTING_DOWN", `${this.options.name} is shutting down; reconnect`);
        }
      };
      runInCall(ctx, pump).then(
        () => {
          ctx.settle();
          if (!call.cancelled) call.end();
          this.logDone(ctx, started, Code.OK);
        },
        (error: unknown) => {
          ctx.settle();
          const rpcError = this.failure(ctx, error);
          if (!call.cancelled) call.emit("error", withHeaders(rpcError, headersSent ? new Metadata() : headers));
          this.logDone(ctx, started, rpcError.code);
        },
      );
    };
  }

  private failure(ctx: CallContext, error: unknown): RpcError {
    // Whatever a handler throws once its deadline has passed (an abort, a cancelled downstream
    // call) means the same to the caller: the deadline expired.
    if (ctx.deadline && ctx.deadline.getTime() <= Date.now() && !isOwnVerdict(error)) {
      return new RpcError(Code.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED", "the call's deadline expired");
    }
    const rpcError = toRpcError(error);
    if (rpcError.code === Code.INTERNAL || rpcError.code === Code.UNKNOWN) ctx.log.error({ err: error }, "call failed");
    return rpcError;
  }

  private logDone(ctx: CallContext, started: number, code: Code): void {
    ctx.log.debug({ code: Code[code], ms: Math.round((performance.now() - started) * 10) / 10 }, "call done");
  }
}

/** The call's deadline (epoch ms; Infinity for none), no later than `maxMs` from now when there is one. */
function clampDeadline(deadline: Date | number, maxMs: number): number {
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  return Number.isFinite(at) ? Math.min(at, Date.now() + maxMs) : Infinity;
}

/** A failure the handler chose (not a consequence of running out of time). */
function isOwnVerdict(error: unknown): boolean {
  return error instanceof RpcError && error.code !== Code.CANCELLED && error.code !== Code.DEADLINE_EXCEEDED && error.code !== Code.UNKNOWN && error.code !== Code.INTERNAL;
}

/** Response headers set before a failure travel as trailers on the error. */
function withHeaders(error: RpcError, headers: Metadata) {
  const serviceError = error.toServiceError();
  serviceError.metadata?.merge(headers);
  return serviceError;
}
