import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { existsSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pino } from "pino";
import { Authorization } from "../../gen/envoy/service/auth/v3/external_auth_pb.js";
import { MeshServer } from "../../runtime/server.js";
import { serverCredentials, type MeshIdentity } from "../../runtime/tls.js";
import { AuthzPolicy, extAuthzHandlers } from "../../services/policy/index.js";
import { bootstrapYaml, staticBootstrap } from "../../services/control-plane/bootstrap.js";
import { ROUTED_SERVICES } from "../../services/control-plane/routed-services.js";
import { freePort } from "../support/ports.js";
import { waitFor } from "../support/wait.js";

/** Envoy as scripts/infra.sh installs it (UMW_ENVOY_BIN from scripts/infra-env.sh). */
export const ENVOY_BIN = process.env.UMW_ENVOY_BIN ?? join(process.cwd(), ".data/envoy/venv/lib/envoy-bin");

export function requireEnvoy(): string {
  if (!existsSync(ENVOY_BIN)) throw new Error(`no Envoy at ${ENVOY_BIN}: run \`scripts/infra.sh envoy\` (or up)`);
  return ENVOY_BIN;
}

/** A child process whose output is kept, for waiting on a line and for failure messages. */
export interface Proc {
  readonly child: ChildProcess;
  output(): string;
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>;
  /** SIGTERM (or `signal`), then waits for the exit; returns the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export function startProcess(command: string, args: string[], env: NodeJS.ProcessEnv = {}): Proc {
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout!.on("data", (chunk) => (output += chunk));
  child.stderr!.on("data", (chunk) => (output += chunk));
  return {
    child,
    output: () => output,
    async waitFor(pattern, timeoutMs = 45_000) {
      const deadline = Date.now() + timeoutMs;
      while (!pattern.test(output)) {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${command} exited (${child.exitCode ?? child.signalCode}) before ${pattern}:\n${output.slice(-4000)}`);
        if (Date.now() > deadline) throw new Error(`${command}: no ${pattern} within ${timeoutMs} ms:\n${output.slice(-4000)}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    async stop(signal = "SIGTERM") {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      const exited = once(child, "exit");
      child.kill(signal);
      const [code] = (await exited) as [number | null];
      return code;
    },
  };
}

export function umw(args: string[], env: NodeJS.ProcessEnv = {}): Proc {
  return startProcess(process.execPath, ["bin/umw.mjs", ...args], env);
}

/** One host of a cluster as Envoy's admin /clusters lists it. */
export interface ClusterHost {
  readonly address: string;
  readonly healthFlags: string;
  readonly rqSuccess: number;
  readonly rqError: number;
}

export async function clusterHosts(adminPort: number, cluster: string): Promise<ClusterHost[]> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/clusters`)).text();
  const hosts = new Map<string, Record<string, string>>();
  for (const line of text.split("\n")) {
    const parts = line.split("::");
    // Host lines are cluster::ip:port::stat::value (others: cluster::outlier::..., ::default_priority::...).
    if (parts.length !== 4 || parts[0] !== cluster || !/:\d+$/.test(parts[1]!)) continue;
    const [, address, key, value] = parts as [string, string, string, string];
    hosts.set(address, { ...hosts.get(address), [key]: value });
  }
  return [...hosts].map(([address, stats]) => ({
    address,
    healthFlags: stats.health_flags ?? "",
    rqSuccess: Number(stats.rq_success ?? 0),
    rqError: Number(stats.rq_error ?? 0),
  }));
}

/**
 * The policy service Envoy's ext_authz asks (services/policy, the committed OPA policy), on a free
 * port with the `policy` identity; Envoy's identity is the trusted peer whose x-umw-* it believes.
 */
export async function startPolicyServer(identity: MeshIdentity): Promise<{ port: number; stop(): Promise<void> }> {
  const server = new MeshServer({ name: "policy", host: "127.0.0.1", port: 0, credentials: serverCredentials(identity), log: pino({ level: "silent" }), drainTimeoutMs: 200 });
  server.addService(Authorization, extAuthzHandlers(await AuthzPolicy.load(), new Set(["envoy"])));
  const port = await server.start();
  return { port, stop: () => server.stop() };
}

type StaticBootstrapOptions = Parameters<typeof staticBootstrap>[0];

/** A real Envoy on a static bootstrap, its admin port and its listener's URL. */
export interface StaticEnvoy {
  readonly proc: Proc;
  readonly url: string;
  readonly adminPort: number;
  stop(): Promise<void>;
}

/**
 * Envoy on a static bootstrap written to `dir` (services/control-plane/bootstrap.ts): upstreams not
 * given point at a closed port. Resolves once each cluster of `healthy` has a healthy host.
 */
export async function startStaticEnvoy(
  options: Omit<StaticBootstrapOptions, "adminPort" | "listenerPort" | "descriptor" | "corsOrigins" | "upstreams"> & {
    readonly dir: string;
    readonly title: string;
    readonly upstreams: Partial<StaticBootstrapOptions["upstreams"]>;
    readonly corsOrigins?: StaticBootstrapOptions["corsOrigins"];
    readonly healthy?: readonly string[];
  },
): Promise<StaticEnvoy> {
  const { dir, title, healthy = [], upstreams, corsOrigins = [], ...rest } = options;
  const [listenerPort, adminPort, closed] = [await freePort(), await freePort(), await freePort()];
  const endpoints = Object.fromEntries(ROUTED_SERVICES.map((service) => [service, upstreams[service] ?? { host: "127.0.0.1", port: closed }])) as StaticBootstrapOptions["upstreams"];
  const config = join(dir, "envoy.yaml");
  writeFileSync(config, bootstrapYaml(staticBootstrap({ ...rest, adminPort, listenerPort, corsOrigins, descriptor: { path: resolve("gen/umw.binpb") }, upstreams: endpoints }), title));
  const proc = startProcess(requireEnvoy(), ["-c", config, "--use-dynamic-base-id", "--concurrency", "1", "--log-level", "warn", "--drain-time-s", "1"]);
  try {
    for (const cluster of healthy) {
      await waitFor(async () => (await clusterHosts(adminPort, cluster)).some((host) => host.healthFlags === "healthy"), {
        what: `Envoy's ${cluster} cluster healthy`,
        timeoutMs: 45_000,
        tolerateErrors: true,
        detail: () => proc.output().slice(-2000),
      });
    }
  } catch (error) {
    await proc.stop().catch(() => undefined);
    throw error;
  }
  return {
    proc,
    url: `http://127.0.0.1:${listenerPort}`,
    adminPort,
    stop: async () => void (await proc.stop().catch(() => undefined)),
  };
}
