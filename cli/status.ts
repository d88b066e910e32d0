import { setTimeout as sleep } from "node:timers/promises";
import type { Config } from "../runtime/config.js";
import { loadIdentity } from "../runtime/tls.js";
import { scrape, type Sample } from "../runtime/prometheus-text.js";
import { SERVICES } from "../services/registry.js";
import { meshStatus, type MeshStatus, type ProcessStatus, type Signals } from "./golden-signals.js";

const USAGE = `usage: umw status [--json] [--once] [--interval <ms>] [--targets host:port,...]

  Live golden signals of a running mesh, read straight from its metrics listeners (no Prometheus):
  per process up and services (UMW_METRICS_TLS: over mTLS as the mesh identity cli); per gRPC service and the edge: rate, errors, p50/p95/p99; the write
  pipeline's backlog and lag. Targets: UMW_METRICS_HOST, ports UMW_METRICS_PORT + 0..${Object.keys(SERVICES).length}.
  Refreshes in place on a terminal (Ctrl-C ends); --json prints one JSON snapshot (rates over
  --interval, default 1000 ms) and exits; --once prints one table and exits.`;

/** Every metrics listener a mesh on this config may have: the base port and one per service offset. */
export function defaultTargets(config: Config): string[] {
  const host = config.metricsHost === "0.0.0.0" ? "127.0.0.1" : config.metricsHost;
  return Array.from({ length: Object.keys(SERVICES).length + 1 }, (_, offset) => `${host}:${config.metricsPort + offset}`);
}

interface Scrape {
  readonly processes: ProcessStatus[];
  readonly samples: Sample[];
  readonly at: number;
}

type ClientTls = { key: Buffer; cert: Buffer; ca: Buffer } | undefined;

async function scrapeAll(targets: readonly string[], tls: ClientTls): Promise<Scrape> {
  const at = performance.now();
  const results = await Promise.all(
    targets.map(async (target) => {
      try {
        const samples = await scrape(`${tls ? "https" : "http"}://${target}/metrics`, AbortSignal.timeout(2_000), tls);
        // A listener with no service up (e.g. still starting) still counts as a process.
        const services = samples.filter((s) => s.name === "umw_service_up" && s.value === 1).map((s) => s.labels.service!);
        return { process: { target, up: true, services }, samples };
      } catch (error) {
        return { process: { target, up: false, error: (error as Error).cause ? String(((error as Error).cause as Error).message ?? (error as Error).cause) : (error as Error).message, services: [] }, samples: [] };
      }
    }),
  );
  return { processes: results.map((r) => r.process), samples: results.flatMap((r) => r.samples), at };
}

export async function collectStatus(targets: readonly string[], windowMs: number, tls: ClientTls, previous?: Scrape): Promise<{ status: MeshStatus; scrape: Scrape }> {
  let before = previous;
  if (!before) {
    before = await scrapeAll(targets, tls);
    await sleep(windowMs);
  }
  const now = await scrapeAll(targets, tls);
  const seconds = (now.at - before.at) / 1000;
  // A process that was down in the first scrape contributes no rate (it may have just started).
  return { status: meshStatus(now.processes, now.samples, before.samples, seconds), scrape: now };
}

export async function runStatus(config: Config, args: string[]): Promise<number> {
  if (args.includes("--help")) {
    console.log(USAGE);
    return 0;
  }
  const option = (name: string) => {
    const index = args.indexOf(name);
    return index >= 0 ? args[index + 1] : undefined;
  };
  const targets = option("--targets")?.split(",").map((t) => t.trim()).filter(Boolean) ?? defaultTargets(config);
  const intervalMs = Number(option("--interval") ?? 1_000);
  // With UMW_METRICS_TLS the listeners require a mesh client certificate: the `cli` identity's.
  const tls = config.metricsTls ? loadIdentity(config.certsDir, "cli") : undefined;
  if (!(intervalMs > 0)) {
    console.error(`umw status: --interval must be a positive number of milliseconds\n\n${USAGE}`);
    return 2;
  }
  if (args.includes("--json")) {
    const { status } = await collectStatus(targets, intervalMs, tls);
    console.log(JSON.stringify(status, null, 2));
    return status.processes.some((p) => p.up) ? 0 : 1;
  }
  const live = process.stdout.isTTY && !args.includes("--once");
  let previous: Scrape | undefined;
  for (;;) {
    const { status, scrape: latest } = await collectStatus(targets, intervalMs, tls, previous);
    previous = latest;
    const text = renderStatus(status);
    if (live) process.stdout.write(`\x1b[H\x1b[2J${text}\n(refreshing every ${intervalMs} ms; Ctrl-C to end)\n`);
    else {
      console.log(text);
      return status.processes.some((p) => p.up) ? 0 : 1;
    }
    await sleep(intervalMs);
  }
}

const ms = (seconds: number | undefined) => (seconds === undefined ? "-" : seconds < 1 ? `${(seconds * 1000).toFixed(1)}ms` : `${seconds.toFixed(2)}s`);
const num = (value: number | undefined, digits = 1) => (value === undefined ? "-" : value.toFixed(digits));

/** The status as a terminal table. */
export function renderStatus(status: MeshStatus): string {
  const lines: string[] = [`umw status at ${status.at} (rates over ${num(status.windowSeconds, 1)} s)`, "", "PROCESS                 UP    SERVICES"];
  for (const p of status.processes) {
    if (!p.up && status.processes.some((other) => other.up)) continue; // unused offsets of a running mesh
    lines.push(`${p.target.padEnd(24)}${(p.up ? "up" : "DOWN").padEnd(6)}${p.up ? p.services.join(", ") || "-" : p.error ?? ""}`);
  }
  lines.push("", "SERVICE                         RATE/s  ERR/s     P50      P95      P99   TOTAL");
  const row = (name: string, s: Signals) =>
    `${name.padEnd(30)}${num(s.rate).padStart(8)}${num(s.errors, 2).padStart(7)}${ms(s.p50).padStart(8)}${ms(s.p95).padStart(9)}${ms(s.p99).padStart(9)}${String(s.total).padStart(8)}`;
  for (const [name, signals] of Object.entries(status.signals)) lines.push(row(name, signals));
  const p = status.pipeline;
  lines.push(
    "",
    "PIPELINE",
    `  outbox backlog ${num(p.outboxBacklog, 0)} rows, oldest ${ms(p.outboxOldestAgeSeconds)}; relay lag p95 ${ms(p.relayLagP95Seconds)}; DLQ inflow ${num(p.dlqMessages, 0)}`,
    `  consumer lag: ${Object.entries(p.consumerLagSeconds).map(([group, lag]) => `${group} ${ms(lag)}`).join(", ") || "-"}`,
    `  realtime streams open ${num(p.realtimeStreamsOpen, 0)}; canary last success ${p.canaryLastSuccessAgeSeconds === undefined ? "-" : `${ms(p.canaryLastSuccessAgeSeconds)} ago`}, accept→visible p95 ${ms(p.canaryVisibleP95Seconds)}`,
  );
  return lines.join("\n");
}
