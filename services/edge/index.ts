import { CommandService } from "../../gen/umw/v1/command_pb.js";
import { QueryService } from "../../gen/umw/v1/query_pb.js";
import { RealtimeService } from "../../gen/umw/v1/realtime_pb.js";
import { edgeTls, serviceAddress } from "../../runtime/config.js";
import type { ServiceModule } from "../../runtime/service.js";
import { clientCredentials } from "../../runtime/tls.js";
import { rateLimiterFromConfig } from "../ratelimit/from-config.js";
import { edgeAuthFromConfig } from "./auth-config.js";
import { startEdge } from "./edge-server.js";

export { startEdge, type RunningEdge } from "./edge-server.js";
export type { EdgeOptions, UpstreamSpec } from "./options.js";
export type { EdgeAuth } from "./authenticator.js";
export { TokenVerifier, type TokenVerifierOptions } from "./token-verifier.js";
export { DevIssuer } from "./dev-issuer.js";

/** Public edge: REST, Connect, gRPC-web (and gRPC on h2c) to the internal services over mTLS gRPC. */
export const edgeService: ServiceModule = {
  name: "edge",
  description: "Public edge: REST, gRPC-web and Connect to internal gRPC over mTLS",
  async start(runtime) {
    const { config } = runtime;
    const limiter = rateLimiterFromConfig(config, runtime.log);
    const { auth, documents } = await edgeAuthFromConfig(config, runtime.log);
    const edge = await startEdge({
      auth,
      documents,
      host: config.host,
      port: config.edgePort,
      h2cPort: config.edgeH2cPort,
      tls: edgeTls(config),
      upstreams: [
        { service: QueryService, address: serviceAddress(config, "query"), credentials: clientCredentials(runtime.identity("edge"), "query") },
        { service: CommandService, address: serviceAddress(config, "command"), credentials: clientCredentials(runtime.identity("edge"), "command") },
        { service: RealtimeService, address: serviceAddress(config, "realtime"), credentials: clientCredentials(runtime.identity("edge"), "realtime") },
      ],
      credentials: clientCredentials(runtime.identity("edge")),
      timeoutMs: config.edgeTimeoutMs,
      maxBodyBytes: config.edgeMaxBodyBytes,
      payloadLimits: { maxDepth: config.payloadMaxDepth, maxBytes: config.payloadMaxBytes },
      corsOrigins: config.edgeCorsOrigins,
      drainTimeoutMs: config.drainTimeoutMs,
      maxTimeoutMs: config.maxCallTimeoutMs,
      headersTimeoutMs: config.httpHeadersTimeoutMs,
      requestTimeoutMs: config.httpRequestTimeoutMs,
      idleTimeoutMs: config.httpIdleTimeoutMs,
      sessionTimeoutMs: config.http2SessionTimeoutMs,
      rateLimit: limiter && { limiter },
      upstreamClient: config.edgeUpstreamClient,
      inProcess: runtime.inProcess && { transport: runtime.inProcess, peer: runtime.identity("edge").name },
      resilience: {
        retryAttempts: config.edgeRetryAttempts,
        retryInitialDelayMs: config.edgeRetryInitialDelayMs,
        retryMaxDelayMs: config.edgeRetryMaxDelayMs,
        retryBudgetRatio: config.edgeRetryBudgetRatio,
        retryBudgetMin: config.edgeRetryBudgetMin,
        retryBudgetWindowMs: config.edgeRetryBudgetWindowMs,
        breakerFailures: config.edgeBreakerFailures,
        breakerHalfOpenAfterMs: config.edgeBreakerHalfOpenAfterMs,
        maxInFlight: config.edgeMaxInFlight,
      },
      log: runtime.log,
    });
    return {
      name: "edge",
      stop: async () => {
        await edge.stop();
        await limiter?.close();
      },
    };
  },
};
