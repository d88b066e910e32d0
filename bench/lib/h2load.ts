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
  /**
   * Paths (or URLs) requested in this order by every client (h2load -i), instead of `url`'s path;
   * `url` still gives the scheme, host and port. With one client and `requests` = paths.length,
   * each path is requested exactly once, in order.
   */
  readonly paths?: readonly string[];
  /** A fixed number of requests (h2load -n) instead of a duration. */
  readonly requests?: number;
  /** Kill h2load after this long (default: duration + warm-up + 30 s). */
  readonly timeoutMs?: number;
}

/** The h2load settings of a run, as recorded in the results. */
export function describeLoad(options: LoadOptions): Record<string, unknown> {
  return {
    protocol: options.http1 ? "http/1.1" : "h2c",
    clients: options.clients ?? 4,
    streams: options.streams ?? 32,
    threads: options.threads ?? 1,
    ...(options.requests !== undefined ? { requests: options.requests } : { durationS: options.durationS ?? 5, warmupS: options.warmupS ?? 1 }),
    ...(options.paths ? { paths: options.paths.length } : {}),
    ...(options.body ? { method: "POST", bodyBytes: options.body.length } : { method: "GET" }),
    ...(options.headers && Object.keys(options.headers).length > 0 ? { headers: options.headers } : {}),
  };
}

export interface LoadResult {
  readonly rps: number;
  readonly requests: number;
  readonly failed: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Responses by status class, as h2load counts them. */
  readonly status: { readonly "2xx": number; readonly "3xx": number; readonly "4xx": number; readonly "5xx": number };
  /** The h2load command line. */
  readonly command: string;
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
      ...(options.requests !== undefined ? ["-n", String(options.requests)] : ["-D", String(options.durationS ?? 5), "--warm-up-time", String(options.warmupS ?? 1)]),
      "--log-file", log,
    ];
    if (options.http1) args.push("--h1");
    for (const [key, value] of Object.entries(options.headers ?? {})) args.push("-H", `${key}: ${value}`);
    if (options.body) {
      const bodyFile = join(dir, "body");
      writeFileSync(bodyFile, options.body);
      args.push("-d", bodyFile);
    }
    if (options.paths) {
      const pathsFile = join(dir, "paths");
      writeFileSync(pathsFile, options.paths.map((path) => new URL(path, options.url).toString()).join("\n") + "\n");
      args.push("-i", pathsFile);
    } else {
      args.push(options.url);
    }
    const timeout = options.timeoutMs ?? ((options.durationS ?? 5) + (options.warmupS ?? 1) + 30) * 1000;
    const { stdout } = await run("h2load", args, { maxBuffer: 16 * 1024 * 1024, timeout, killSignal: "SIGKILL" });
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
    const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(stdout);
    return {
      rps: Math.round(rps),
      requests: Number(counts[4]),
      failed,
      p50Ms: percentile(latencies, 0.5),
      p99Ms: percentile(latencies, 0.99),
      status: { "2xx": Number(codes?.[1] ?? 0), "3xx": Number(codes?.[2] ?? 0), "4xx": Number(codes?.[3] ?? 0), "5xx": Number(codes?.[4] ?? 0) },
      command: ["h2load", ...args.map((arg) => (arg.startsWith(dir) ? `<${arg.slice(dir.length + 1)}>` : /\s/.test(arg) ? `'${arg}'` : arg))].join(" "),
    };
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
