// npm run bench:charts — draws docs/charts/*.svg from bench/results/curves-*.json (written by
// `npm run bench:curves`), so that the charts can be redrawn without running the benches again.
// A curve whose JSON is missing is skipped (said so); a point without a figure leaves a gap.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { renderChart, type ChartSpec, type Point } from "./lib/svg-chart.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const RESULTS_DIR = join(ROOT, "bench", "results");
const CHARTS_DIR = join(ROOT, "docs", "charts");

interface CurveFile {
  readonly bench: string;
  readonly command: string;
  readonly generated_at: string;
  readonly machine: { readonly cpus: number };
  readonly points: readonly Record<string, any>[];
}

/** `pick` of every point (null where the point has no such figure). */
function series(file: CurveFile, pick: (point: Record<string, any>) => unknown): Point[] {
  return file.points.map((point) => {
    const value = pick(point);
    return { x: point.size as number, y: typeof value === "number" && Number.isFinite(value) ? value : null };
  });
}

/** "npm run bench:curves -- reads · 2026-12-03 · load 1.2–3.4 on 2 cpus": where the figures come from. */
function subtitle(file: CurveFile): string {
  const loads = file.points.map((point) => point.load1).filter((value): value is number => typeof value === "number");
  const load = loads.length ? `load ${Math.min(...loads)}–${Math.max(...loads)} on ${file.machine.cpus} cpus` : "";
  return [file.command, file.generated_at.slice(0, 10), load].filter(Boolean).join(" · ");
}

const charts: Record<string, (file: CurveFile) => Record<string, ChartSpec>> = {
  reads: (file) => ({
    reads: {
      title: "Cached reads by key count: throughput",
      subtitle: subtitle(file),
      xLabel: "cached keys (Zipf 1.1 reads, HTTP/1.1, 64 connections)",
      yLabel: "requests/s",
      xScale: "log",
      yScale: "log",
      series: [
        { name: "umw edge (auth, policy, metrics on)", points: series(file, (p) => p.throughput) },
        { name: "hand-written peer (node:http + ioredis)", points: series(file, (p) => p.peer?.rps), dashed: true },
        { name: "floor (bare node:http)", points: series(file, (p) => p.floor?.rps), dashed: true },
      ],
    },
    "reads-memory": {
      title: "Cached reads by key count: Redis memory per entry",
      subtitle: subtitle(file),
      xLabel: "cached keys",
      yLabel: "bytes per entry (MEMORY USAGE, sampled)",
      xScale: "log",
      series: [
        { name: "umw cache entry (header + protobuf)", points: series(file, (p) => p.memory?.umw_entry_bytes_sampled) },
        { name: "peer's JSON value", points: series(file, (p) => p.memory?.peer_entry_bytes_sampled), dashed: true },
      ],
    },
  }),
  writes: (file) => ({
    writes: {
      title: "Writes by processor instances: accept → visible in Redis",
      subtitle: subtitle(file),
      xLabel: "processor instances",
      yLabel: "ms (server-side clocks)",
      kind: "bar",
      series: [
        { name: "p50", points: series(file, (p) => p.p50_ms) },
        { name: "p99", points: series(file, (p) => p.p99_ms) },
      ],
    },
    "writes-cpu": {
      title: "Writes by processor instances: CPU per command",
      subtitle: subtitle(file),
      xLabel: "processor instances",
      yLabel: "CPU µs per command",
      kind: "bar",
      series: [
        { name: "pipeline (command, relay, processors, cache updater)", points: series(file, (p) => p.cpu_us_per_op) },
        { name: "processors", points: series(file, (p) => p.processors_cpu_us_per_command) },
      ],
    },
  }),
  fanout: (file) => ({
    fanout: {
      title: "Fan-out by stream count: publish → receive latency",
      subtitle: subtitle(file),
      xLabel: "Subscribe streams (fixed event rate)",
      yLabel: "ms",
      xScale: "log",
      series: [
        { name: "hub p50", points: series(file, (p) => p.p50_ms) },
        { name: "hub p99", points: series(file, (p) => p.p99_ms) },
        { name: "bare Kafka consumer p99", points: series(file, (p) => p.baseline?.kafka_consumer_p99_ms), dashed: true },
      ],
    },
    "fanout-cost": {
      title: "Fan-out by stream count: hub cost",
      subtitle: subtitle(file),
      xLabel: "Subscribe streams",
      yLabel: "hub CPU µs per delivery / KB RSS per stream",
      xScale: "log",
      series: [
        { name: "CPU µs per delivery", points: series(file, (p) => p.cpu_us_per_op) },
        { name: "KB RSS per stream", points: series(file, (p) => p.rss_kb_per_stream) },
      ],
    },
  }),
};

mkdirSync(CHARTS_DIR, { recursive: true });
let drawn = 0;
for (const [bench, specs] of Object.entries(charts)) {
  const path = join(RESULTS_DIR, `curves-${bench}.json`);
  if (!existsSync(path)) {
    console.log(`skipped ${bench}: no ${path.slice(ROOT.length + 1)} (npm run bench:curves -- ${bench})`);
    continue;
  }
  const file = JSON.parse(readFileSync(path, "utf8")) as CurveFile;
  for (const [name, spec] of Object.entries(specs(file))) {
    const out = join(CHARTS_DIR, `${name}.svg`);
    writeFileSync(out, renderChart(spec));
    drawn++;
    console.log(`wrote ${out.slice(ROOT.length + 1)} from ${path.slice(ROOT.length + 1)}`);
  }
}
if (drawn === 0) process.exitCode = 1;
