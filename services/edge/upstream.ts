import { Metadata, type ChannelCredentials, type ClientOptions } from "@grpc/grpc-js";
import { fromBinary, type DescMessage, type DescService, type Message } from "@bufbuild/protobuf";
import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { ServiceClient } from "../../runtime/client.js";
import type { Logger } from "../../runtime/logger.js";
import type { InProcessRoute } from "../../runtime/in-process-transport.js";
import { Http2UnaryTransport } from "../../runtime/http2-unary-transport.js";
import { clientTlsOf } from "../../runtime/tls.js";
import { DEFAULT_UPSTREAM_RESILIENCE, upstreamInterceptors, type UpstreamResilience } from "./upstream-resilience.js";

/** How unary calls go upstream: a grpc-js channel, or the lean node:http2 transport (runtime/http2-unary-transport.ts). */
export type UpstreamClient = "grpc-js" | "lean";

export type HealthState = "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN" | "UNKNOWN" | "UNREACHABLE";

/**
 * One internal gRPC service the edge forwards to: the mesh client (runtime/client.ts) over the
 * edge's mTLS identity, with unary responses decoded once per distinct bytes, and the service's
 * health for the edge's readiness. Failures reject with RpcErrors whose `wireError` keeps the
 * upstream's whole Status and trailers (e.g. umw-cache-status), so the edge passes them on and
 * tells a service's own UNAVAILABLE from a channel that cannot connect (upstreamFailure in edge-failure.ts).
 * Its calls go through the upstream's in-flight bound, circuit breaker and read retries (upstream-resilience.ts).
 * With `inProcess`, unary calls to a service hosted in the same process go through its server chain directly.
 * With `client` "lean", unary calls over the network use one node:http2 session of the same mTLS
 * identity instead of grpc-js (streams and health checks stay on grpc-js).
 */
export class Upstream {
  readonly client: ServiceClient;

  constructor(
    readonly service: DescService,
    readonly address: string,
    credentials: ChannelCredentials,
    options: ClientOptions = {},
    resilience: UpstreamResilience = DEFAULT_UPSTREAM_RESILIENCE,
    log?: Logger,
    inProcess?: InProcessRoute,
    client: UpstreamClient = "lean",
  ) {
    this.client = new ServiceClient(service, address, credentials, {
      unaryTransport: client === "lean" ? leanTransport(address, credentials, options, log) : undefined,
      // Under `umw serve all` the unary calls to a service of this process skip the network, not the interceptors.
      inProcess,
      channel: options,
      interceptors: upstreamInterceptors(service.typeName, resilience, log),
      // The edge forwards the caller's headers it is configured to (forwarded-headers.ts), nothing implicit.
      forwardMetadata: [],
      responseDecoder: (method) => {
        if (method.methodKind !== "unary") return undefined;
        const decoded = new DecodedResponses(method.output, MEMO_ENTRIES);
        return (bytes) => decoded.decode(bytes);
      },
    });
  }

  /**
   * grpc.health.v1.Health/Check for this service (falling back to the server as a whole when the
   * server does not know the service name). Never rejects.
   */
  async health(timeoutMs: number): Promise<HealthState> {
    const state = await this.check(this.service.typeName, timeoutMs);
    return state === "SERVICE_UNKNOWN" ? this.check("", timeoutMs) : state;
  }

  close(): void {
    this.client.close();
  }

  private check(service: string, timeoutMs: number): Promise<HealthState> {
    return new Promise((resolve) => {
      this.client.grpc.makeUnaryRequest<string, HealthState>(
        "/grpc.health.v1.Health/Check",
        encodeHealthCheckRequest,
        decodeHealthCheckResponse,
        service,
        new Metadata(),
        { deadline: Date.now() + timeoutMs },
        (error, state) => {
          if (!error) resolve(state ?? "UNKNOWN");
          else resolve(error.code === 5 /* NOT_FOUND */ ? "SERVICE_UNKNOWN" : "UNREACHABLE");
        },
      );
    });
  }
}

/**
 * The lean transport over the credentials' own TLS material (runtime/tls.ts clientCredentials), or
 * cleartext for insecure credentials; credentials of another origin cannot be read, so those keep
 * grpc-js (logged).
 */
function leanTransport(address: string, credentials: ChannelCredentials, channel: ClientOptions, log?: Logger): Http2UnaryTransport | undefined {
  const tls = clientTlsOf(credentials);
  if (!tls && credentials._isSecure()) {
    log?.warn({ address }, "UMW_EDGE_UPSTREAM_CLIENT=lean needs credentials made by clientCredentials (runtime/tls.ts); this upstream keeps grpc-js");
    return undefined;
  }
  return new Http2UnaryTransport(address, {
    tls,
    keepaliveTimeMs: channel["grpc.keepalive_time_ms"],
    keepaliveTimeoutMs: channel["grpc.keepalive_timeout_ms"],
    // grpc-js: -1 is no limit.
    maxReceiveMessageBytes: channel["grpc.max_receive_message_length"] === -1 ? Infinity : channel["grpc.max_receive_message_length"],
  });
}

/** Distinct unary responses whose decoded message is kept (per method), and the largest one kept. */
const MEMO_ENTRIES = 1024;
const MEMO_MAX_BYTES = 8 * 1024;

/**
 * Unary responses decoded once per distinct bytes: a cached entity comes back as the same bytes on
 * every read, so one decoded message serves them all (and the REST gateway renders its JSON once).
 * Messages handed out here are shared and must not be modified; oldest entry evicted first.
 */
class DecodedResponses {
  private readonly messages = new Map<string, Message>();

  constructor(
    private readonly schema: DescMessage,
    private readonly maxEntries: number,
  ) {}

  decode(bytes: Buffer): Message {
    if (this.maxEntries <= 0 || bytes.length > MEMO_MAX_BYTES) return fromBinary(this.schema, bytes);
    const key = bytes.toString("latin1");
    let message = this.messages.get(key);
    if (message === undefined) {
      message = fromBinary(this.schema, bytes);
      this.messages.set(key, message);
      if (this.messages.size > this.maxEntries) this.messages.delete(this.messages.keys().next().value!);
    }
    return message;
  }
}

// grpc.health.v1: HealthCheckRequest { string service = 1; }, HealthCheckResponse { ServingStatus status = 1; }
const SERVING_STATUS: readonly HealthState[] = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

function encodeHealthCheckRequest(service: string): Buffer {
  const writer = new BinaryWriter();
  if (service) writer.tag(1, WireType.LengthDelimited).string(service);
  return Buffer.from(writer.finish());
}

function decodeHealthCheckResponse(bytes: Buffer): HealthState {
  const reader = new BinaryReader(bytes);
  let state: HealthState = "UNKNOWN";
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.Varint) state = SERVING_STATUS[reader.int32()] ?? "UNKNOWN";
    else reader.skip(wireType);
  }
  return state;
}
