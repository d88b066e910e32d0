import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { requireEnvoy, startProcess, type Proc } from "../../test/envoy/support.js";
import { freePort } from "../../test/support/ports.js";
import { waitFor } from "../../test/support/wait.js";

/** Clock ticks per second of /proc/<pid>/stat's CPU times. */
const CLOCK_TICKS = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;

/** Envoy 1.40 (scripts/infra.sh envoy) on the static config `umw envoy-config` renders, in front of one QueryService (and the policy service its ext_authz asks). */
export interface BenchEnvoy {
  readonly name: "envoy";
  readonly port: number;
  readonly adminPort: number;
  /** The same CPU window as a ServerProcess: markCpu(), then the share of one core used since. */
  markCpu(): Promise<void>;
  cpuSince(): Promise<number>;
  stop(): Promise<void>;
}

export async function startEnvoy(options: { certsDir: string; queryAddress: string; workDir: string }): Promise<BenchEnvoy> {
  const bin = requireEnvoy();
  const [port, adminPort, policyPort] = [await freePort(), await freePort(), await freePort()];
  const config = join(options.workDir, "envoy-bench.yaml");
  // Every request is checked by the policy service (ext_authz) before it is routed. Log level info:
  // "umw ready" is an info line.
  const policy: Proc = startProcess(process.execPath, ["bin/umw.mjs", "serve", "policy"], { UMW_CERTS_DIR: options.certsDir, UMW_POLICY_PORT: String(policyPort), UMW_METRICS_PORT: "0", UMW_LOG_LEVEL: "info" });
  let proc: Proc | undefined;
  try {
    await policy.waitFor(/umw ready/, 30_000);
    // Only the query cluster is reachable: command and realtime point at a closed port (unused here).
    execFileSync(process.execPath, [
      "bin/umw.mjs", "envoy-config", "--out", config, "--certs", options.certsDir, "--admin-port", String(adminPort), "--port", String(port),
      "--descriptor", join(process.cwd(), "gen/umw.binpb"), "--query", options.queryAddress, "--command", "127.0.0.1:1", "--realtime", "127.0.0.1:1",
      "--policy", `127.0.0.1:${policyPort}`,
    ]);
    proc = startProcess(bin, ["-c", config, "--concurrency", "1", "--log-level", "warn", "--base-id", String(port)]);
    const envoy = proc;
    await waitFor(
      async () => {
        if (envoy.child.exitCode !== null) throw new Error(`Envoy exited:\n${envoy.output().slice(-3000)}`);
        return fetch(`http://127.0.0.1:${adminPort}/ready`).then((r) => r.ok, () => false);
      },
      { what: "Envoy ready", timeoutMs: 30_000, everyMs: 100 },
    );
  } catch (error) {
    // Children left running would keep the bench alive after its failure.
    await proc?.stop("SIGKILL");
    await policy.stop("SIGKILL");
    throw error;
  }
  const envoy = proc;
  const pid = envoy.child.pid!;
  const cpuTicks = () => {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return Number(fields[11]) + Number(fields[12]); // utime + stime (fields 14 and 15 of the whole line)
  };
  let mark = { ticks: 0, at: 0 };
  return {
    name: "envoy",
    port,
    adminPort,
    async markCpu() {
      mark = { ticks: cpuTicks(), at: performance.now() };
    },
    async cpuSince() {
      const cpuMs = ((cpuTicks() - mark.ticks) / CLOCK_TICKS) * 1000;
      return Math.round((cpuMs / (performance.now() - mark.at)) * 100);
    },
    async stop() {
      await envoy.stop();
      await policy.stop();
    },
  };
}
