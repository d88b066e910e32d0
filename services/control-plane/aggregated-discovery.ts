import { create, equals, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { anyPack, AnySchema, type Any } from "@bufbuild/protobuf/wkt";
import type { ServerDuplexStream } from "@grpc/grpc-js";
import { DiscoveryResponseSchema, type DiscoveryRequest, type DiscoveryResponse } from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import type { Logger } from "../../runtime/logger.js";

export const TYPE = {
  cluster: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
  endpoints: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
  listener: "type.googleapis.com/envoy.config.listener.v3.Listener",
  routes: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
} as const;
export type TypeUrl = (typeof TYPE)[keyof typeof TYPE];

/** Push order within one change: clusters before their endpoints, listeners before their routes. */
const ORDER: readonly TypeUrl[] = [TYPE.cluster, TYPE.endpoints, TYPE.listener, TYPE.routes];
/** Types whose requests name the resources they want; the others are wildcard subscriptions. */
const NAMED: ReadonlySet<string> = new Set([TYPE.endpoints, TYPE.routes]);

/** One resource type's current state of the world: a version that changes whenever a resource does. */
interface TypeSnapshot {
  version: number;
  resources: Map<string, Any>;
}

/** What one Envoy has been sent and has said about one resource type. */
interface Subscription {
  names: ReadonlySet<string>;
  sentVersion: number;
  sentNonce: string;
  /** The last version it applied (ACK), and the last it rejected (NACK). */
  ackedVersion: number;
  nackedVersion: number;
}

interface Stream {
  readonly id: number;
  readonly peer: string;
  node?: string;
  nonce: number;
  readonly subscriptions: Map<TypeUrl, Subscription>;
  write(response: DiscoveryResponse): void;
}

type Typed = { readonly name: string; readonly message: MessageShape<DescMessage>; readonly schema: DescMessage };

/**
 * Envoy's Aggregated Discovery Service, state of the world: every stream gets the full set of a
 * type (or, for endpoints and routes, of the names it asked for) at the current version, with a
 * fresh nonce. An ACK records the version the Envoy applied; a NACK is logged and the Envoy keeps
 * its last good configuration (nothing is resent until the resources change again).
 */
export class AggregatedDiscovery {
  private readonly snapshots = new Map<TypeUrl, TypeSnapshot>(ORDER.map((type) => [type, { version: 0, resources: new Map() }]));
  private readonly streams = new Set<Stream>();
  private readonly waiters = new Set<() => void>();
  private nextStreamId = 1;

  constructor(private readonly log: Logger) {}

  /** Replaces one type's resources; bumps its version and pushes it only if something changed. */
  set(type: TypeUrl, resources: readonly Typed[]): number {
    const snapshot = this.snapshots.get(type)!;
    const next = new Map(resources.map((resource) => [resource.name, anyPack(resource.schema, resource.message)]));
    const same =
      snapshot.version > 0 &&
      next.size === snapshot.resources.size &&
      [...next].every(([name, any]) => {
        const current = snapshot.resources.get(name);
        return current !== undefined && equals(AnySchema, current, any);
      });
    if (same) return snapshot.version;
    snapshot.version += 1;
    snapshot.resources = next;
    this.log.info({ type: shortType(type), version: snapshot.version, resources: [...next.keys()] }, "xds: resources changed");
    for (const stream of this.streams) if (stream.subscriptions.has(type)) this.send(stream, type);
    return snapshot.version;
  }

  /** Replaces several types in push order (clusters, endpoints, listeners, routes). */
  setAll(resources: Partial<Record<TypeUrl, readonly Typed[]>>): void {
    for (const type of ORDER) if (resources[type]) this.set(type, resources[type]!);
  }

  version(type: TypeUrl): number {
    return this.snapshots.get(type)!.version;
  }

  /**
   * Resolves true once every connected Envoy that subscribes to `type` has ACKed `version` or a
   * later one, false if one NACKed it or `timeoutMs` passed first.
   */
  async applied(type: TypeUrl, version: number, timeoutMs: number): Promise<boolean> {
    const settled = (): boolean | undefined => {
      let rejected = false;
      for (const stream of this.streams) {
        const subscription = stream.subscriptions.get(type);
        if (!subscription) continue;
        if (subscription.ackedVersion >= version) continue;
        if (subscription.nackedVersion >= version) rejected = true;
        else return undefined;
      }
      return !rejected;
    };
    const now = settled();
    if (now !== undefined) return now;
    return new Promise<boolean>((resolve) => {
      const check = () => {
        const result = settled();
        if (result === undefined) return;
        finish(result);
      };
      const timer = setTimeout(() => finish(false), timeoutMs);
      const finish = (result: boolean) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(result);
      };
      this.waiters.add(check);
    });
  }

  /** The grpc-js handler of StreamAggregatedResources. */
  handle = (call: ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>): void => {
    const stream: Stream = {
      id: this.nextStreamId++,
      peer: call.getPeer(),
      nonce: 0,
      subscriptions: new Map(),
      write: (response) => void call.write(response),
    };
    this.streams.add(stream);
    const log = this.log.child({ stream: stream.id, peer: stream.peer });
    log.info("xds: Envoy connected");
    const close = () => {
      if (!this.streams.delete(stream)) return;
      log.info({ node: stream.node }, "xds: Envoy disconnected");
      this.notify();
    };
    call.on("data", (request: DiscoveryRequest) => {
      try {
        this.receive(stream, request, log);
      } catch (error) {
        log.error({ err: error }, "xds: request failed");
      }
    });
    call.on("end", () => {
      close();
      call.end();
    });
    call.on("cancelled", close);
    call.on("error", close);
    call.on("close", close);
  };

  /** Ends every stream (Envoy reconnects with backoff and keeps what it has meanwhile). */
  closeAll(): void {
    this.streams.clear();
    this.notify();
  }

  private receive(stream: Stream, request: DiscoveryRequest, log: Logger): void {
    if (request.node?.id && !stream.node) stream.node = request.node.id;
    const type = request.typeUrl as TypeUrl;
    if (!this.snapshots.has(type)) {
      log.warn({ type: request.typeUrl }, "xds: request for a type this control plane does not serve");
      return;
    }
    let subscription = stream.subscriptions.get(type);
    if (request.responseNonce) {
      // A reply to an earlier response than the last one sent is stale: the newer one is on its way.
      if (!subscription || request.responseNonce !== subscription.sentNonce) return;
      if (request.errorDetail) {
        subscription.nackedVersion = subscription.sentVersion;
        log.warn(
          { node: stream.node, type: shortType(type), rejectedVersion: subscription.sentVersion, keeps: request.versionInfo || "(none)", error: request.errorDetail.message },
          "xds: NACK, Envoy keeps its last good configuration",
        );
        this.notify();
        return;
      }
      subscription.ackedVersion = Number(request.versionInfo) || 0;
      this.notify();
    }
    const names = new Set(request.resourceNames);
    const changed = !subscription || !sameNames(subscription.names, names);
    if (!subscription) {
      subscription = { names, sentVersion: 0, sentNonce: "", ackedVersion: Number(request.versionInfo) || 0, nackedVersion: 0 };
      stream.subscriptions.set(type, subscription);
    }
    subscription.names = names;
    // A first request (or one after reconnecting), or a new set of names, gets the current state;
    // an ACK of the current version needs nothing.
    if (!request.responseNonce || changed) this.send(stream, type);
  }

  private send(stream: Stream, type: TypeUrl): void {
    const subscription = stream.subscriptions.get(type)!;
    const snapshot = this.snapshots.get(type)!;
    const wildcard = !NAMED.has(type) || subscription.names.size === 0 || subscription.names.has("*");
    const resources = wildcard ? [...snapshot.resources.values()] : [...subscription.names].flatMap((name) => snapshot.resources.get(name) ?? []);
    stream.nonce += 1;
    subscription.sentVersion = snapshot.version;
    subscription.sentNonce = String(stream.nonce);
    stream.write(create(DiscoveryResponseSchema, { versionInfo: String(snapshot.version), typeUrl: type, nonce: subscription.sentNonce, resources }));
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}

function sameNames(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  return a.size === b.size && [...a].every((name) => b.has(name));
}

function shortType(type: string): string {
  return type.slice(type.lastIndexOf(".") + 1);
}
