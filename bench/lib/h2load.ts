import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface LoadOptions {
  readonly url: string;
  /** Concurrent connections. */
  readonly clients?: number;
  /** Concurrent streams per connection (HTTP/2). */
  readonly streams?: number;
  readonly durationS?: number;
  readonly warmupS?: number;
  readonly headers?: Readonly<Record<string, string>>;
  /** Request body (e.g. a length-prefixed gRPC message); sent with POST. */
  readonly body?: Uint8Array;
  /** Use HTTP/1.1 instead of h2c. */
  readonly http1?: boolean;
  readonly threads?: number;
}

export interface LoadResult {
  readonly rps: number;
  readonly requests: number;
  readonly failed: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

/**
 * Drives a server with h2load (C, so the client is not what saturates) and reads per-request
 * latencies from its log to report percentiles.
 */
export async function h2load(options: LoadOptions): Promise<LoadResult> {
  const dir = mkdtempSync(join(tmpdir(), "umw-h2load-"));
  try {
    const log = join(dir, "requests.log");
    const args = [
      "-c", String(options.clients ?? 4),
      "-m", String(options.streams ?? 32),
      "-t", String(options.threads ?? 1),
      "-D", String(options.durationS ?? 5),
      "--warm-up-time", String(options.warmupS ?? 1),
      "--log-file", log,
    ];
    if (options.http1) args.push("--h1");
    for (const [key, value] of Object.entries(options.headers ?? {})) args.push("-H", `${key}: ${value}`);
    if (options.body) {
      const bodyFile = join(dir, "body");
      writeFileSync(bodyFile, options.body);
      args.push("-d", bodyFile);
    }
    args.push(options.url);
    const { stdout } = await run("h2load", args, { maxBuffer: 16 * 1024 * 1024 });
    const rps = Number(/finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(stdout)?.[1]);
    const counts = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(stdout);
    if (!Number.isFinite(rps) || !counts) throw new Error(`cannot read h2load output:\n${stdout}`);
    // Log lines: start time (µs since epoch), status, elapsed µs.
    const latencies = readFileSync(log, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((line) => Number(line.split("\t")[2]) / 1000)
      .sort((a, b) => a - b);
    const failed = Number(counts[5]) + Number(counts[6]);
    return { rps: Math.round(rps), requests: Number(counts[4]), failed, p50Ms: percentile(latencies, 0.5), p99Ms: percentile(latencies, 0.99) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const value = sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return Math.round(value * 100) / 100;
}

/** A gRPC request body: 1-byte compressed flag, 4-byte big-endian length, the message. */
export function grpcFrame(message: Uint8Array): Uint8Array {
  const frame = new Uint8Array(5 + message.length);
  new DataView(frame.buffer).setUint32(1, message.length);
  frame.set(message, 5);
  return frame;
}
