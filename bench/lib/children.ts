import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { RoleSpec, Started, ZipfDone, ZipfLoad } from "./serve.js";

const ENTRY = fileURLToPath(new URL("./serve.ts", import.meta.url));

/** One server in a child process of its own (see serve.ts). */
export class ServerProcess {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
  private lastCpu = { user: 0, system: 0, at: 0 };
  info!: Started;

  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
  ) {
    child.on("message", (message: { id: number; ok: boolean; result: unknown; error?: string }) => {
      const waiter = this.pending.get(message.id);
      if (!waiter) return;
      this.pending.delete(message.id);
      if (message.ok) waiter.resolve(message.result);
      else waiter.reject(new Error(`${name}: ${message.error}`));
    });
    child.on("exit", (code, signal) => {
      for (const waiter of this.pending.values()) waiter.reject(new Error(`${name} exited (${code ?? signal})`));
      this.pending.clear();
    });
  }

  /** Forks serve.ts and starts `spec` in it. `cpuProfDir`: write a V8 CPU profile there on stop. */
  static async start(name: string, spec: RoleSpec, options: { cpuProfDir?: string } = {}): Promise<ServerProcess> {
    // DEP0123: grpc-js sets the TLS servername of an IP address (127.0.0.1) once per connection.
    const execArgv = ["--import", "tsx", "--disable-warning=DEP0123"];
    if (options.cpuProfDir) execArgv.push("--cpu-prof", "--cpu-prof-dir", options.cpuProfDir);
    const child = fork(ENTRY, [], { execArgv, stdio: ["ignore", "inherit", "inherit", "ipc"] });
    const server = new ServerProcess(name, child);
    server.info = (await server.request("start", { spec })) as Started;
    return server;
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Starts a CPU window: cpuSince() reports the share of one core used since. */
  async markCpu(): Promise<void> {
    const usage = (await this.request("cpu")) as NodeJS.CpuUsage;
    this.lastCpu = { ...usage, at: performance.now() };
  }

  /** Percent of one core used since markCpu(). */
  async cpuSince(): Promise<number> {
    const usage = (await this.request("cpu")) as NodeJS.CpuUsage;
    const elapsedUs = (performance.now() - this.lastCpu.at) * 1000;
    return Math.round(((usage.user - this.lastCpu.user + usage.system - this.lastCpu.system) / elapsedUs) * 100);
  }

  /** Starts a V8 CPU profile of just the window up to profileStop() (not the start-up, unlike --cpu-prof). */
  async profileStart(intervalUs = 250): Promise<void> {
    await this.request("profile-start", { intervalUs });
  }

  /** Ends the window's profile and writes it (a .cpuprofile, for Chrome DevTools or bench/lib/profile-summary.ts) to `file`. */
  async profileStop(file: string): Promise<void> {
    await this.request("profile-stop", { file });
  }

  /** Zipf reads on the child's EntityReader (query role only). */
  zipf(load: ZipfLoad): Promise<ZipfDone> {
    return this.request("zipf", { load }) as Promise<ZipfDone>;
  }

  /** SIGKILL (the run's time bound was reached). */
  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once("exit", () => resolve()));
    await Promise.race([this.request("stop").catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 5_000))]);
    const killer = setTimeout(() => this.child.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(killer);
  }

  private request(cmd: string, extra: object = {}): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.send({ id, cmd, ...extra });
    });
  }
}
