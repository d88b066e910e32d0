import type { DescService } from "@bufbuild/protobuf";
import type { Config } from "./config.js";
import type { Infrastructure } from "./infrastructure.js";
import { InProcessTransport } from "./in-process-transport.js";
import type { ServerInterceptor } from "./interceptor.js";
import type { Logger } from "./logger.js";
import { MeshAuthorization } from "./mesh-authorization.js";
import { MeshServer, meshServerLimits } from "./server.js";
import type { ServableHandlers } from "./service-definition.js";
import { loadIdentity, serverCredentials, type MeshIdentity } from "./tls.js";

/** What every service gets from the process that runs it. */
export interface ServiceRuntime {
  readonly config: Config;
  readonly log: Logger;
  /** The stores of the process (real or embedded), shared by its services and closed by its owner. */
  readonly infrastructure: Infrastructure;
  /** The mTLS identity of a mesh member (certificate `<name>.crt` in the certs folder). */
  identity(name: string): MeshIdentity;
  /** Interceptors every mesh server of the process runs after the built-in ones (the policy). */
  readonly serverInterceptors: readonly ServerInterceptor[];
  /** Makes a started server known (to the control plane); resolves to what undoes it before the server drains. */
  readonly announce?: (service: string, port: number, identity: MeshIdentity) => Promise<(() => Promise<void>) | undefined>;
  /** The services of this process, for callers in it (UMW_IN_PROCESS_TRANSPORT); undefined: every call over gRPC. */
  readonly inProcess?: InProcessTransport;
}

/** What the composition root adds to a runtime (services/compose.ts): the policy and the control plane. */
export interface RuntimeExtensions {
  readonly serverInterceptors?: readonly ServerInterceptor[];
  readonly announce?: ServiceRuntime["announce"];
}

export interface RunningService {
  readonly name: string;
  /** Graceful: stop accepting, drain, release what the service opened (not the infrastructure). */
  stop(): Promise<void>;
}

/** A folder under services/ exports one of these. */
export interface ServiceModule {
  readonly name: string;
  readonly description: string;
  start(runtime: ServiceRuntime): Promise<RunningService>;
}

export function createRuntime(config: Config, log: Logger, infrastructure: Infrastructure, extensions: RuntimeExtensions = {}): ServiceRuntime {
  const identities = new Map<string, MeshIdentity>();
  return {
    config,
    log,
    infrastructure,
    serverInterceptors: extensions.serverInterceptors ?? [],
    ...(extensions.announce && { announce: extensions.announce }),
    inProcess: config.inProcessTransport ? new InProcessTransport() : undefined,
    identity(name) {
      let identity = identities.get(name);
      if (!identity) identities.set(name, (identity = loadIdentity(config.certsDir, name)));
      return identity;
    },
  };
}

export interface GrpcServiceSpec<S extends DescService> {
  readonly name: string;
  readonly port: number;
  readonly service?: S;
  readonly handlers?: ServableHandlers<S>;
}

/** The mesh authorization a config asks for: its table (UMW_MESH_AUTHZ) and the peers that may assert a principal. */
export function meshAuthorization(config: Config): MeshAuthorization {
  return new MeshAuthorization(config.meshAuthz, config.trustedPrincipalPeers);
}

/** Starts a mesh server on mTLS for one service (or a worker with only Health and reflection). */
export async function startMeshServer<S extends DescService>(runtime: ServiceRuntime, spec: GrpcServiceSpec<S>): Promise<MeshServer> {
  const server = new MeshServer({
    name: spec.name,
    host: runtime.config.host,
    port: spec.port,
    credentials: serverCredentials(runtime.identity(spec.name)),
    log: runtime.log,
    drainTimeoutMs: runtime.config.drainTimeoutMs,
    limits: meshServerLimits(runtime.config),
    interceptors: runtime.serverInterceptors,
    authorization: meshAuthorization(runtime.config),
  });
  if (spec.service && spec.handlers) server.addService(spec.service, spec.handlers);
  const port = await server.start();
  if (runtime.inProcess) offerInProcess(runtime.inProcess, server);
  const withdraw = await runtime.announce?.(spec.name, port, runtime.identity(spec.name));
  if (withdraw) {
    const stop = server.stop.bind(server);
    server.stop = async () => {
      await withdraw();
      await stop();
    };
  }
  return server;
}

/** Callers in this process reach the server in process while it serves; it leaves before it drains. */
function offerInProcess(transport: InProcessTransport, server: MeshServer): void {
  const offered = server.inProcess();
  transport.register(offered);
  const stop = server.stop.bind(server);
  server.stop = async () => {
    transport.unregister(offered);
    await stop();
  };
}

/**
 * What a starting service has opened, closed in reverse order by `closeAll` (on stop, or when the
 * start fails halfway). A failing close is logged and does not keep the rest open.
 */
export function closeStack(log: Logger): { push(close: () => Promise<unknown>): void; closeAll(): Promise<void> } {
  const closers: Array<() => Promise<unknown>> = [];
  return {
    push: (close) => void closers.push(close),
    async closeAll() {
      for (const close of closers.reverse()) await close().catch((error: unknown) => log.warn({ err: error }, "close failed"));
      closers.length = 0;
    },
  };
}
