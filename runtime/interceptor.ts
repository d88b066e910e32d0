import type { DescMethod, Message } from "@bufbuild/protobuf";
import type { Metadata } from "@grpc/grpc-js";
import type { CallContext } from "./call-context.js";
import { Code, RpcError } from "./errors.js";

/**
 * Interceptors, in the spirit of connect-es: `(next) => async (req) => res`. An interceptor sees
 * every call of a method, unary and server-streaming alike, can change the request, answer or
 * fail instead of calling `next`, and wrap the response (a stream's messages included). Chains are
 * composed once per method, when the method is registered, never per call.
 *
 * The server chain runs in MeshServer around each handler (runtime/server.ts); the client chain
 * runs in the mesh client around each outgoing call (runtime/client.ts).
 */
export type Next<Req, Res> = (req: Req) => Promise<Res>;
export type Interceptor<Req, Res> = (next: Next<Req, Res>) => Next<Req, Res>;

/** A unary response: one message. */
export interface UnaryResponse<M> {
  readonly stream: false;
  readonly message: M;
}

/** A server-streaming response: messages as they come; failures are thrown by the iteration. */
export interface StreamResponse<M> {
  readonly stream: true;
  readonly message: AsyncIterable<M>;
}

/**
 * The server's view of a call while the chain runs: a CallContext whose request id and deadline
 * the interceptors settle (request id interceptor, deadline interceptor) before the handler runs.
 */
export interface ServerCallContext extends CallContext {
  requestId: string;
  deadline: Date | undefined;
}

export interface ServerRequest {
  readonly method: DescMethod;
  /** The decoded request message. */
  readonly message: Message;
  /** Request id, deadline, abort signal, peer identity, logger, incoming headers (`context.headers`). */
  readonly context: ServerCallContext;
}

/** Handlers may answer init shapes (no $typeName): the server builds the message when it sends. */
export type ServerResponse = UnaryResponse<unknown> | StreamResponse<unknown>;
export type ServerInterceptor = Interceptor<ServerRequest, ServerResponse>;

export interface ClientRequest {
  readonly method: DescMethod;
  /** The request message (or its init shape). */
  readonly message: unknown;
  /** Outgoing gRPC metadata; interceptors add to it. */
  readonly header: Metadata;
  /** Epoch milliseconds, or Infinity for none; interceptors may only make it earlier. */
  deadline: number;
  /** Cancels the call when aborted. */
  readonly signal: AbortSignal | undefined;
  /** The call being served on this async path, if any (request id, deadline, headers to forward). */
  readonly context: CallContext | undefined;
  /** Receives the response headers (gRPC initial metadata) when they arrive. */
  readonly onHeader: ((header: Metadata) => void) | undefined;
}

export interface ClientUnaryResponse extends UnaryResponse<Message> {
  /** The response headers (gRPC initial metadata), when the server sent any. */
  readonly header: Metadata | undefined;
}
export type ClientResponse = ClientUnaryResponse | StreamResponse<Message>;
export type ClientInterceptor = Interceptor<ClientRequest, ClientResponse>;

/** `terminal` wrapped by the interceptors, the first one outermost. */
export function composeChain<Req, Res>(interceptors: readonly Interceptor<Req, Res>[], terminal: Next<Req, Res>): Next<Req, Res> {
  let next = terminal;
  for (let i = interceptors.length - 1; i >= 0; i--) next = interceptors[i]!(next);
  return next;
}

/**
 * A stream's messages, with `onError` mapping whatever the iteration throws and `onEnd` told how
 * it ended (undefined: completed or abandoned by the consumer; else the thrown, mapped error).
 *
 * Every interceptor of a chain observes every stream, so this runs once per message: observers of
 * one stream are kept in one plain iterator (one `then` per message for the whole chain) instead
 * of one async generator each (several promises per message per interceptor). Inner observers
 * come first, as if each wrapped the one before.
 */
export function observeStream<M>(
  messages: AsyncIterable<M>,
  onError: ((error: unknown) => unknown) | undefined,
  onEnd?: (error: unknown) => void,
): AsyncIterable<M> {
  const observer = { onError, onEnd };
  if (messages instanceof ObservedStream) return new ObservedStream<M>(messages.source as AsyncIterable<M>, [...messages.observers, observer]);
  return new ObservedStream(messages, [observer]);
}

interface StreamObserver {
  readonly onError: ((error: unknown) => unknown) | undefined;
  readonly onEnd: ((error: unknown) => void) | undefined;
}

class ObservedStream<M> implements AsyncIterable<M> {
  constructor(
    readonly source: AsyncIterable<M>,
    readonly observers: readonly StreamObserver[],
  ) {}

  [Symbol.asyncIterator](): AsyncIterator<M> {
    return new ObservedIterator(this.source[Symbol.asyncIterator](), this.observers);
  }
}

class ObservedIterator<M> implements AsyncIterator<M> {
  private ended = false;

  constructor(
    private readonly inner: AsyncIterator<M>,
    private readonly observers: readonly StreamObserver[],
  ) {}

  next(): Promise<IteratorResult<M>> {
    if (this.ended) return Promise.resolve({ done: true, value: undefined });
    return this.inner.next().then(this.passed, this.failed);
  }

  async return(value?: unknown): Promise<IteratorResult<M>> {
    if (!this.ended) {
      try {
        await this.inner.return?.(value);
      } catch (error) {
        this.failed(error);
      }
      this.end();
    }
    return { done: true, value: value as M };
  }

  private readonly passed = (result: IteratorResult<M>): IteratorResult<M> => {
    if (result.done) this.end();
    return result;
  };

  private readonly failed = (error: unknown): never => {
    if (this.ended) throw error;
    this.ended = true;
    let failure = error;
    for (const { onError, onEnd } of this.observers) {
      if (onError) failure = onError(failure);
      onEnd?.(failure);
    }
    throw failure;
  };

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    for (const { onEnd } of this.observers) onEnd?.(undefined);
  }
}

/**
 * The response of `call`, with `done` told once how the call ended (undefined: it succeeded): at
 * once for a failure or a unary answer, when the stream ends for a stream. What the metrics and
 * logging interceptors, on server and client, observe.
 */
export async function whenCallEnds<R extends UnaryResponse<unknown> | StreamResponse<unknown>>(call: Promise<R>, done: (error: unknown) => void): Promise<R> {
  let response: R;
  try {
    response = await call;
  } catch (error) {
    done(error);
    throw error;
  }
  if (!response.stream) {
    done(undefined);
    return response;
  }
  return { ...response, message: observeStream(response.message, undefined, done) };
}

/** The status code a call ended with, given what it threw (undefined: it succeeded). */
export function statusCodeOf(error: unknown): Code {
  if (error === undefined) return Code.OK;
  return error instanceof RpcError ? error.code : Code.UNKNOWN;
}
