import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { pino } from "pino";
import { Authorization } from "../../gen/envoy/service/auth/v3/external_auth_pb.js";
import { MeshServer } from "../../runtime/server.js";
import { serverCredentials, type MeshIdentity } from "../../runtime/tls.js";
import { AuthzPolicy, extAuthzHandlers } from "../../services/policy/index.js";

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
