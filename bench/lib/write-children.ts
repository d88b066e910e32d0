import { fork, spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { AcceptLoad, LoadDone, PgLoad } from "./write-load.js";

const LOAD_ENTRY = fileURLToPath(new URL("./write-load.ts", import.meta.url));
const UMW = fileURLToPath(new URL("../../bin/umw.mjs", import.meta.url));

/** One load generator in a child process of its own (write-load.ts). */
export class LoadProcess {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve(value: LoadDone): void; reject(error: Error): void }>();

  private constructor(private readonly child: ChildProcess) {
    child.on("message", (message: { id: number; ok: boolean; result: LoadDone; error?: string }) => {
      const waiter = this.pending.get(message.id);
      if (!waiter) return;
      this.pending.delete(message.id);
      if (message.ok) waiter.resolve(message.result);
      else waiter.reject(new Error(`load generator: ${message.error}`));
    });
    child.on("exit", (code, signal) => {
      for (const waiter of this.pending.values()) waiter.reject(new Error(`load generator exited (${code ?? signal})`));
      this.pending.clear();
    });
  }

  static start(): LoadProcess {
    return new LoadProcess(fork(LOAD_ENTRY, [], { execArgv: ["--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"] }));
  }

  accept(load: AcceptLoad): Promise<LoadDone> {
    return this.request("accept", load);
  }

  pg(load: PgLoad): Promise<LoadDone> {
    return this.request("pg", load);
  }

  stop(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
  }

  private request(cmd: string, load: AcceptLoad | PgLoad): Promise<LoadDone> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.send({ id, cmd, load });
    });
  }
}

/** CPU time (user + system, ms) a process has used so far, from /proc (Linux). */
export function processCpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the command name, in clock ticks (100/s).
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}

/** `umw serve <names...>` as a child process, as it is deployed. */
export class UmwProcess {
  private output = "";
  private cpuMark = 0;
  private cpuMarkAt = 0;

  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
  ) {
    const take = (chunk: Buffer) => (this.output = (this.output + chunk.toString("utf8")).slice(-50_000));
    child.stdout!.on("data", take);
    child.stderr!.on("data", take);
  }

  /** Starts and waits for "umw ready". `cpuProfDir`: a V8 CPU profile is written there on exit. */
  static async start(names: readonly string[], env: NodeJS.ProcessEnv, options: { cpuProfDir?: string; timeoutMs?: number } = {}): Promise<UmwProcess> {
    const args = options.cpuProfDir ? ["--cpu-prof", "--cpu-prof-dir", options.cpuProfDir] : [];
    const child = spawn(process.execPath, [...args, UMW, "serve", ...names], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    const proc = new UmwProcess(names.join("+"), child);
    const deadline = Date.now() + (options.timeoutMs ?? 60_000);
    while (!proc.output.includes("umw ready")) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`umw serve ${proc.name} exited early:\n${proc.output.slice(-3_000)}`);
      if (Date.now() > deadline) {
        child.kill("SIGKILL");
        throw new Error(`umw serve ${proc.name} not ready in time:\n${proc.output.slice(-3_000)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return proc;
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** The last lines it printed (for failures). */
  tail(chars = 3_000): string {
    return this.output.slice(-chars);
  }

  markCpu(): void {
    this.cpuMark = processCpuMs(this.pid) ?? 0;
    this.cpuMarkAt = performance.now();
  }

  /** Percent of one core used since markCpu(). */
  cpuSince(): number {
    const now = processCpuMs(this.pid);
    if (now === undefined) return Number.NaN;
    return Math.round(((now - this.cpuMark) / (performance.now() - this.cpuMarkAt)) * 100);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once("exit", () => resolve()));
    this.child.kill("SIGTERM");
    const killer = setTimeout(() => this.child.kill("SIGKILL"), 15_000);
    await exited;
    clearTimeout(killer);
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
  }
}
