import type { ChannelCredentials, ClientOptions } from "@grpc/grpc-js";
import type { DescService } from "@bufbuild/protobuf";
import { pino } from "pino";
import type { Logger } from "../../runtime/logger.js";
import type { InProcessRoute } from "../../runtime/in-process-transport.js";
import { DEFAULT_PAYLOAD_LIMITS, type PayloadLimits } from "../command/payload-limits.js";
import type { EdgeRateLimit } from "./rate-limit.js";
import type { EdgeAuth } from "./authenticator.js";
import { DEFAULT_UPSTREAM_RESILIENCE, type UpstreamResilience } from "./upstream-resilience.js";
import type { UpstreamClient } from "./upstream.js";
import { DEFAULT_FORWARDED_HEADERS, DEFAULT_PASSTHROUGH_HEADERS, isPrincipalHeader } from "./forwarded-headers.js";

/** An internal service the edge exposes, and where it listens (host:port, mTLS gRPC). */
export interface UpstreamSpec {
  readonly service: DescService;
  readonly address: string;
  /** mTLS credentials for this upstream (e.g. verifying its identity); default: `credentials`. */
  readonly credentials?: ChannelCredentials;
}

export interface EdgeOptions {
  /** Interface to listen on; default 127.0.0.1. */
  readonly host?: string;
  /** HTTP/1.1 port for REST, Connect and gRPC-web; 0 picks a free one. */
  readonly port: number;
  /** Optional HTTP/2 cleartext (h2c) port serving the same, plus gRPC for clients that need HTTP/2. */
  readonly h2cPort?: number;
  /** Optional TLS port serving the same with ALPN h2 and http/1.1 (browsers speak HTTP/2 only over TLS). */
  readonly tls?: EdgeTlsOptions;
  readonly upstreams: readonly UpstreamSpec[];
  /** How callers authenticate: bearer tokens checked by a TokenVerifier, or explicitly `none` (see authenticator.ts). */
  readonly auth: EdgeAuth;
  /** JSON documents served on GET at their paths (the dev issuer's discovery document and JWKS). */
  readonly documents?: Readonly<Record<string, unknown>>;
  /** The edge's mTLS client credentials (runtime/tls.ts clientCredentials(identity("edge"))). */
  readonly credentials: ChannelCredentials;
  /** Deadline of a unary upstream call; a shorter Connect/gRPC timeout of the caller wins. Default 15 s. */
  readonly timeoutMs?: number;
  /** Deadline of a server-streaming call; 0 (default) for none. */
  readonly streamTimeoutMs?: number;
  /** Largest REST or Connect request body; default 1 MiB. */
  readonly maxBodyBytes?: number;
  /** Limits of an entity payload (a request's google.protobuf.Struct), as CommandService enforces them. */
  readonly payloadLimits?: PayloadLimits;
  /** Origins allowed by CORS; none by default; `*` allows any. */
  readonly corsOrigins?: readonly string[];
  /** Cache-Control of successful GET answers; default `private, max-age=0, must-revalidate`. */
  readonly cacheControl?: string;
  /** Request headers forwarded to the upstream as metadata (x-request-id always is). */
  readonly forwardHeaders?: readonly string[];
  /** Upstream response metadata passed to the client; `umw-cache-status` becomes REST `Cache-Status`. */
  readonly passthroughHeaders?: readonly string[];
  /** Message types whose `version` becomes the ETag of a response carrying one; default umw.v1.Entity. */
  readonly versionedTypes?: readonly string[];
  /** How long /readyz waits for each upstream's Health/Check; default 1 s. */
  readonly readyTimeoutMs?: number;
  /** How long stop() lets requests finish before closing connections; default 10 s. */
  readonly drainTimeoutMs?: number;
  /** Longest deadline a caller may ask for (Connect-Timeout-Ms, grpc-timeout); longer ones are clamped. Default 1 h. */
  readonly maxTimeoutMs?: number;
  /** HTTP/1.1: time to receive the request headers; default 10 s. */
  readonly headersTimeoutMs?: number;
  /** HTTP/1.1 and h2c: time to receive the whole request (headers and body); default 30 s. */
  readonly requestTimeoutMs?: number;
  /** HTTP/1.1: how long a kept-alive connection may idle between requests; default 5 s. */
  readonly idleTimeoutMs?: number;
  /** h2c: a session without any frame for this long is closed (a preface-only one too); default 120 s. */
  readonly sessionTimeoutMs?: number;
  /** Longest request target (path and query); longer ones get 414. Default 8 KiB. */
  readonly maxUrlBytes?: number;
  readonly channelOptions?: ClientOptions;
  /** Transport of unary upstream calls: grpc-js (default) or the lean node:http2 one (UMW_EDGE_UPSTREAM_CLIENT; upstream.ts). */
  readonly upstreamClient?: UpstreamClient;
  /** Retries of reads, circuit breaker and in-flight bound per upstream (upstream-resilience.ts); defaults where unset. */
  readonly resilience?: Partial<UpstreamResilience>;
  /** Rate limits and quotas (services/ratelimit); none when absent. */
  readonly rateLimit?: EdgeRateLimit;
  /** Unary calls to upstreams hosted in this process go in process, as this mesh identity (runtime/in-process-transport.ts). */
  readonly inProcess?: InProcessRoute;
  readonly log?: Logger;
}

/** The edge's public TLS listener: its port (0 picks a free one) and PEM files of the certificate chain and key. */
export interface EdgeTlsOptions {
  readonly port: number;
  readonly certFile: string;
  readonly keyFile: string;
}

export type ResolvedEdgeOptions = Required<Omit<EdgeOptions, "h2cPort" | "tls" | "rateLimit" | "resilience" | "inProcess">> &
  Pick<EdgeOptions, "h2cPort" | "tls" | "rateLimit" | "inProcess"> & { readonly resilience: UpstreamResilience };

export function resolveEdgeOptions(options: EdgeOptions): ResolvedEdgeOptions {
  return {
    host: options.host ?? "127.0.0.1",
    port: options.port,
    h2cPort: options.h2cPort,
    tls: options.tls,
    upstreams: options.upstreams,
    auth: options.auth,
    documents: options.documents ?? {},
    credentials: options.credentials,
    timeoutMs: options.timeoutMs ?? 15_000,
    streamTimeoutMs: options.streamTimeoutMs ?? 0,
    maxBodyBytes: options.maxBodyBytes ?? 1024 * 1024,
    payloadLimits: options.payloadLimits ?? DEFAULT_PAYLOAD_LIMITS,
    corsOrigins: options.corsOrigins ?? [],
    cacheControl: options.cacheControl ?? "private, max-age=0, must-revalidate",
    // The principal's metadata is the edge's to set (from the verified token), never the client's.
    forwardHeaders: (options.forwardHeaders ?? DEFAULT_FORWARDED_HEADERS).map((name) => name.toLowerCase()).filter((name) => !isPrincipalHeader(name)),
    passthroughHeaders: (options.passthroughHeaders ?? DEFAULT_PASSTHROUGH_HEADERS).map((name) => name.toLowerCase()),
    versionedTypes: options.versionedTypes ?? ["umw.v1.Entity"],
    readyTimeoutMs: options.readyTimeoutMs ?? 1_000,
    drainTimeoutMs: options.drainTimeoutMs ?? 10_000,
    maxTimeoutMs: Math.min(options.maxTimeoutMs ?? 3_600_000, 2_147_483_647),
    headersTimeoutMs: options.headersTimeoutMs ?? 10_000,
    requestTimeoutMs: options.requestTimeoutMs ?? 30_000,
    idleTimeoutMs: options.idleTimeoutMs ?? 5_000,
    sessionTimeoutMs: options.sessionTimeoutMs ?? 120_000,
    maxUrlBytes: options.maxUrlBytes ?? 8_192,
    channelOptions: options.channelOptions ?? {},
    upstreamClient: options.upstreamClient ?? "lean",
    resilience: { ...DEFAULT_UPSTREAM_RESILIENCE, ...options.resilience },
    rateLimit: options.rateLimit,
    inProcess: options.inProcess,
    log: options.log ?? pino({ level: "silent" }),
  };
}
