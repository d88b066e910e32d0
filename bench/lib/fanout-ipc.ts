// Request/response over the IPC channel of a forked child (advanced serialization, so typed arrays
// travel as such), used by the fan-out bench: the parent asks, the child answers each `id` once.
import { fork, type ChildProcess } from "node:child_process";

type Handler = (args: any) => unknown;

interface Request {
  readonly id: number;
  readonly cmd: string;
  readonly args: unknown;
}

interface Reply {
  readonly id: number;
  readonly ok: boolean;
  readonly result?: unknown;
  readonly error?: string;
}

/** Child side: answers the parent's requests with `handlers`; exits when the parent goes away. */
export function serveParent(handlers: Record<string, Handler>): void {
  if (!process.send) throw new Error("this script runs as a child of the fan-out bench (bench/fanout.ts)");
  process.on("message", (request: Request) => {
    const handler = handlers[request.cmd];
    Promise.resolve()
      .then(() => {
        if (!handler) throw new Error(`unknown command ${request.cmd}`);
        return handler(request.args);
      })
      .then(
        (result) => process.send!({ id: request.id, ok: true, result } satisfies Reply),
        (error: unknown) => process.send!({ id: request.id, ok: false, error: error instanceof Error ? (error.stack ?? error.message) : String(error) } satisfies Reply),
      );
  });
  process.on("disconnect", () => process.exit(0));
}

/** Parent side: one forked TypeScript child and its requests. */
export class Child {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
  private exited = false;

  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
  ) {
    child.on("message", (reply: Reply) => {
      const waiter = this.pending.get(reply.id);
      if (!waiter) return;
      this.pending.delete(reply.id);
      if (reply.ok) waiter.resolve(reply.result);
      else waiter.reject(new Error(`${name}: ${reply.error}`));
    });
    child.on("exit", (code, signal) => {
      this.exited = true;
      for (const waiter of this.pending.values()) waiter.reject(new Error(`${name} exited (${code ?? signal})`));
      this.pending.clear();
    });
  }

  /** Forks `entry` (a .ts file) under tsx; `nodeArgs` e.g. --expose-gc. */
  static fork(name: string, entry: string, nodeArgs: readonly string[] = []): Child {
    const child = fork(entry, [], {
      execArgv: ["--import", "tsx", ...nodeArgs],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      serialization: "advanced",
    });
    return new Child(name, child);
  }

  get pid(): number {
    return this.child.pid!;
  }

  request<T>(cmd: string, args: unknown = {}, timeoutMs = 120_000): Promise<T> {
    if (this.exited) return Promise.reject(new Error(`${this.name} has exited`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.name}: no answer to ${cmd} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value as T);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.child.send({ id, cmd, args } satisfies Request);
    });
  }

  /** Asks the child to stop (`cmd`), then disconnects; SIGKILL if it is still there after the bound. */
  async stop(cmd = "stop", boundMs = 8_000): Promise<void> {
    if (this.exited) return;
    const exited = new Promise<void>((resolve) => this.child.once("exit", () => resolve()));
    await this.request(cmd, {}, boundMs).catch(() => undefined);
    if (this.child.connected) this.child.disconnect();
    const killer = setTimeout(() => this.kill(), boundMs);
    await exited;
    clearTimeout(killer);
  }

  kill(): void {
    if (!this.exited) this.child.kill("SIGKILL");
  }
}
