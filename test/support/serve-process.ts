import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { waitFor } from "./wait.js";

/** A `umw serve <names>` child process, as deployed; its output is kept for assertions and diagnostics. */
export class ServeProcess {
  /** Every complete line it wrote (stdout and stderr). */
  readonly lines: string[] = [];

  private constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    const reader = () => {
      let tail = "";
      return (chunk: Buffer) => {
        const parts = (tail + chunk.toString("utf8")).split("\n");
        tail = parts.pop() ?? "";
        this.lines.push(...parts);
      };
    };
    child.stdout!.on("data", reader());
    child.stderr!.on("data", reader());
  }

  /** Starts `umw serve <services>` and waits for its "umw ready" line. */
  static async start(services: readonly string[], env: NodeJS.ProcessEnv, timeoutMs = 60_000): Promise<ServeProcess> {
    const child = spawn(process.execPath, ["bin/umw.mjs", "serve", ...services], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    const proc = new ServeProcess(services.join("+"), child);
    try {
      await waitFor(
        () => {
          assert.ok(proc.running, `${proc.name} exited early:\n${proc.output()}`);
          return proc.lines.some((line) => line.includes('"umw ready"'));
        },
        { what: `${proc.name} to be ready`, timeoutMs, everyMs: 50 },
      );
    } catch (error) {
      await proc.stop();
      throw error;
    }
    return proc;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The last lines, for failure messages. */
  output(lines = 60): string {
    return this.lines.slice(-lines).join("\n");
  }

  /** How many lines so far contain `needle`. */
  count(needle: string): number {
    let n = 0;
    for (const line of this.lines) if (line.includes(needle)) n++;
    return n;
  }

  /** The JSON log lines it wrote (anything else is skipped). */
  jsonLines(): Record<string, unknown>[] {
    const parsed: Record<string, unknown>[] = [];
    for (const line of this.lines) {
      if (!line.startsWith("{")) continue;
      try {
        parsed.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // a line cut by the process' end
      }
    }
    return parsed;
  }

  /** SIGKILL, as a crash: nothing is flushed. */
  async kill9(): Promise<void> {
    if (!this.running) return;
    const exited = once(this.child, "exit");
    this.child.kill("SIGKILL");
    await exited;
  }

  /** SIGTERM (the process flushes and stops), SIGKILL after 10 s. */
  async stop(): Promise<void> {
    if (!this.running) return;
    const exited = once(this.child, "exit");
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  }
}
