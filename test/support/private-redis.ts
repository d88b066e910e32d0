import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { freePort } from "./ports.js";
import { waitFor } from "./wait.js";

/**
 * A Redis server of one test's own, in a temporary folder on a free port: for tests that stop or
 * restart the cache (the shared one on :16379 is never touched). Configured as scripts/infra.sh
 * configures the shared one (loopback, no persistence), without the ACL user: umw connects with
 * whatever the URL says, so `redis://127.0.0.1:<port>` (no credentials) is all it needs.
 */
export interface PrivateRedis {
  /** `redis://127.0.0.1:<port>`. */
  readonly url: string;
  readonly port: number;
  /** SIGTERM and wait for the exit (every connection is closed, the data is gone: no persistence). */
  stop(): Promise<void>;
  /** Starts it again on the same port and waits for PONG. */
  start(): Promise<void>;
  /** Stops the server and removes its folder. */
  destroy(): Promise<void>;
}

export async function startPrivateRedis(): Promise<PrivateRedis> {
  const dir = mkdtempSync(join(tmpdir(), "umw-redis-"));
  const port = await freePort();
  const config = join(dir, "redis.conf");
  writeFileSync(config, [`bind 127.0.0.1`, `port ${port}`, "protected-mode yes", "daemonize no", `dir ${dir}`, `logfile ${join(dir, "redis.log")}`, 'save ""', "appendonly no"].join("\n") + "\n");
  const url = `redis://127.0.0.1:${port}`;
  let child: ChildProcess | undefined;

  const ping = async () => {
    const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 500 });
    redis.on("error", () => undefined);
    try {
      await redis.connect();
      return (await redis.ping()) === "PONG" ? true : undefined;
    } finally {
      redis.disconnect();
    }
  };
  const start = async () => {
    child = spawn("redis-server", [config], { stdio: "ignore" });
    const exited = once(child, "exit");
    await Promise.race([
      waitFor(ping, { what: `private redis on :${port}`, timeoutMs: 15_000, everyMs: 20, tolerateErrors: true }),
      exited.then(() => Promise.reject(new Error(`redis-server exited at start (log: ${join(dir, "redis.log")})`))),
    ]);
  };
  const stop = async () => {
    const running = child;
    if (!running || running.exitCode !== null || running.signalCode !== null) return;
    const exited = once(running, "exit");
    running.kill("SIGTERM");
    await exited;
  };
  await start();
  let destroyed = false;
  return {
    url,
    port,
    stop,
    start,
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
