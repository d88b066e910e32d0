// npm run bench:curves — each benchmark at three sizes, so that a user sees how cost grows with work:
//   reads   1k / 100k / 1M cached keys, with Redis memory per cached entry (bench/lib/read-curve.ts)
//   writes  1 / 2 / 4 processor instances (`npm run bench:write` with BENCH_PROCESSORS)
//   fanout  1k / 10k / 50k Subscribe streams (`npm run bench:fanout` with BENCH_STREAMS)
// Each point keeps its same-run floor, baseline or peer, the load average, the date and the command
// that produced it. Writes bench/results/curves-<bench>.json after every point (a failed point is
// recorded with its error, the others still run); `npm run bench:charts` draws docs/charts/*.svg.
//
// Which curves: arguments (`npm run bench:curves -- reads fanout`) or BENCH_CURVES (default all).
// Sizes: BENCH_CURVE_READ_KEYS (1000,100000,1000000), BENCH_CURVE_PROCESSORS (1,2,4),
// BENCH_CURVE_STREAMS (1000,10000,50000). Per-point settings below (BENCH_* set in the environment win).
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { infra } from "../test/support/env.js";
import { runReadCurve, type ReadPoint } from "./lib/read-curve.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const RESULTS_DIR = join(HERE, "results");
const sizes = (name: string, fallback: number[]) => (process.env[name] ? process.env[name]!.split(",").map((value) => Number(value.trim())) : fallback);
const num = (name: string, fallback: number) => (process.env[name] ? Number(process.env[name]) : fallback);

const READ_KEYS = sizes("BENCH_CURVE_READ_KEYS", [1_000, 100_000, 1_000_000]);
const PROCESSORS = sizes("BENCH_CURVE_PROCESSORS", [1, 2, 4]);
const STREAMS = sizes("BENCH_CURVE_STREAMS", [1_000, 10_000, 50_000]);
/** The write bench at each processor count: one accept round (the floor) and a shorter visible phase. */
const WRITE_ENV = { BENCH_ACCEPT_ROUNDS: "1", BENCH_ACCEPT_S: "3", BENCH_VISIBLE_S: "10", BENCH_VISIBLE_WARMUP_S: "2", BENCH_MAX_S: "200" };
/** The fan-out bench at each stream count: a fixed event rate, so that deliveries grow with the streams. */
const FANOUT_ENV = { BENCH_ENTITIES: "1000", BENCH_RATE: "200", BENCH_DURATION_S: "8", BENCH_PROBE_S: "4", BENCH_MAX_S: "240" };

const CURVES = ["reads", "writes", "fanout"] as const;
type Curve = (typeof CURVES)[number];
const chosen = (process.argv.slice(2).length ? process.argv.slice(2) : (process.env.BENCH_CURVES ?? CURVES.join(",")).split(",")).map((name) => name.trim()).filter(Boolean);
for (const name of chosen) if (!CURVES.includes(name as Curve)) throw new Error(`bench:curves: unknown curve "${name}" (reads, writes, fanout)`);

const began = performance.now();
const seconds = () => (performance.now() - began) / 1000;
const round = (value: number, digits = 2) => Math.round(value * 10 ** digits) / 10 ** digits;
const loadavg = () => os.loadavg().map((value) => round(value));
const totalSteps = chosen.reduce((sum, name) => sum + (name === "reads" ? READ_KEYS.length : name === "writes" ? PROCESSORS.length : STREAMS.length), 0);
let step = 0;
function progress(message: string): void {
  console.log(`[${seconds().toFixed(1).padStart(6)}s] curves ${message}  (load ${os.loadavg()[0]!.toFixed(2)})`);
}

/** One point of a curve; `error` when it could not be measured. */
interface CurvePoint {
  readonly size: number;
  readonly throughput: number | null;
  readonly p50_ms: number | null;
  readonly p99_ms: number | null;
  readonly cpu_us_per_op: number | null;
  readonly load1: number;
  readonly loadavg: number[];
  readonly date: string;
  readonly command: string;
  readonly duration_s: number;
  readonly error?: string;
  readonly [more: string]: unknown;
}

interface CurveFile {
  readonly bench: Curve;
  readonly x: { readonly name: string; readonly unit: string; readonly sizes: readonly number[] };
  readonly throughput_unit: string;
  readonly cpu_per_op: string;
  readonly command: string;
  generated_at: string;
  duration_s: number;
  readonly machine: { cpus: number; cpu_model?: string; node: string; loadavg_at_start: number[]; loadavg_at_end?: number[] };
  readonly points: CurvePoint[];
  notes: string[];
}

function newFile(bench: Curve, x: CurveFile["x"], throughputUnit: string, cpuPerOp: string): CurveFile {
  return {
    bench,
    x,
    throughput_unit: throughputUnit,
    cpu_per_op: cpuPerOp,
    command: `npm run bench:curves -- ${bench}`,
    generated_at: new Date().toISOString(),
    duration_s: 0,
    machine: { cpus: os.cpus().length, cpu_model: os.cpus()[0]?.model, node: process.version, loadavg_at_start: loadavg() },
    points: [],
    notes: [],
  };
}

function save(file: CurveFile, started: number): string {
  file.generated_at = new Date().toISOString();
  file.duration_s = round((performance.now() - started) / 1000, 1);
  file.machine.loadavg_at_end = loadavg();
  const path = join(RESULTS_DIR, `curves-${file.bench}.json`);
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(path, JSON.stringify(file, null, 2) + "\n");
  return path;
}

/** The BENCH_* settings of a point, the environment's own BENCH_* winning, as a repeatable command line. */
function pointEnv(defaults: Record<string, string>, fixed: Record<string, string>): Record<string, string> {
  const fromEnvironment = Object.fromEntries(Object.entries(process.env).filter(([name]) => name.startsWith("BENCH_") && !name.startsWith("BENCH_CURVE")) as [string, string][]);
  return { ...defaults, ...fromEnvironment, ...fixed };
}
/** A BENCH_* setting of the points: the environment's, else the curve's default. */
const env = (defaults: Record<string, string>, name: string) => process.env[name] ?? defaults[name];
const commandLine = (env: Record<string, string>, script: string) => [...Object.entries(env).map(([name, value]) => `${name}=${value}`), `npm run ${script}`].join(" ");

/** Runs a bench's own entry point as a child (its progress lines shown, indented) and returns its results JSON. */
function runBench(script: string, env: Record<string, string>): Promise<Record<string, any>> {
  const dir = mkdtempSync(join(os.tmpdir(), "umw-curve-"));
  const resultsFile = join(dir, "results.json");
  return new Promise<Record<string, any>>((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", join(HERE, script)], {
      env: { ...process.env, ...env, BENCH_RESULTS_FILE: resultsFile, BENCH_TRACING: "off" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let tail = "";
    const relay = (chunk: Buffer) => {
      const text = chunk.toString("utf8");
      tail = (tail + text).slice(-4_000);
      process.stdout.write(text.replace(/^(?=.)/gm, "    "));
    };
    child.stdout.on("data", relay);
    child.stderr.on("data", relay);
    child.on("error", reject);
    child.on("exit", (code, signal) => {
      try {
        if (code !== 0) throw new Error(`${script} exited with ${code ?? signal}: ${tail.slice(-1_500)}`);
        resolve(JSON.parse(readFileSync(resultsFile, "utf8")) as Record<string, any>);
      } catch (error) {
        reject(error);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}

const failedPoint = (size: number, command: string, started: number, error: unknown): CurvePoint => ({
  size,
  throughput: null,
  p50_ms: null,
  p99_ms: null,
  cpu_us_per_op: null,
  load1: loadavg()[0]!,
  loadavg: loadavg(),
  date: new Date().toISOString(),
  command,
  duration_s: round((performance.now() - started) / 1000, 1),
  error: String((error as Error)?.message ?? error).slice(0, 2_000),
});

async function readsCurve(): Promise<string> {
  const started = performance.now();
  const file = newFile("reads", { name: "cached keys", unit: "keys", sizes: READ_KEYS }, "requests/s", "CPU µs per request: edge + query + Redis (umw), peer + Redis (peer), the floor process (floor)");
  const settings = { durationS: num("BENCH_DURATION_S", 5), warmupS: num("BENCH_WARMUP_S", 1), jitWarmupS: num("BENCH_JIT_WARMUP_S", 2), clients: num("BENCH_H1_CLIENTS", 64), paths: num("BENCH_CURVE_PATHS", 20_000), auth: process.env.BENCH_CURVE_AUTH !== "off" };
  const command = commandLine(
    { BENCH_CURVE_READ_KEYS: READ_KEYS.join(","), BENCH_DURATION_S: String(settings.durationS), BENCH_WARMUP_S: String(settings.warmupS), BENCH_JIT_WARMUP_S: String(settings.jitWarmupS), BENCH_H1_CLIENTS: String(settings.clients), BENCH_CURVE_PATHS: String(settings.paths), ...(settings.auth ? {} : { BENCH_CURVE_AUTH: "off" }) },
    "bench:curves -- reads",
  );
  progress(`[${step + 1}-${(step += READ_KEYS.length)}/${totalSteps}] reads: ${READ_KEYS.join(" / ")} keys (one run, keys added point by point): ${command}`);
  // The forked servers trace as the other benches' default does: not at all (bench/lib/tracing.ts).
  process.env.UMW_OTLP_ENDPOINT = "";
  try {
    const { points, notes } = await runReadCurve({ redisUrl: infra.redisUrl, sizes: READ_KEYS, ...settings, progress });
    for (const point of points) file.points.push(readPoint(point, command));
    file.notes.push(...notes);
  } catch (error) {
    progress(`reads failed: ${(error as Error).message}`);
    file.points.push(failedPoint(READ_KEYS[0]!, command, started, error));
  }
  file.notes.push(`One run adds keys from one size to the next (${READ_KEYS.join(" → ")}); every figure of a point is taken after its keys are loaded.`);
  return save(file, started);
}

function readPoint(point: ReadPoint, command: string): CurvePoint {
  return {
    size: point.size,
    throughput: point.umw.rps,
    p50_ms: point.umw.p50_ms,
    p99_ms: point.umw.p99_ms,
    cpu_us_per_op: point.umw.cpu_us_per_op,
    memory_per_entry_bytes: point.memory.umw_entry_bytes_sampled,
    floor: point.floor,
    peer: point.peer,
    ratio_to_floor: point.ratio_umw_to_floor,
    ratio_to_peer: point.ratio_umw_to_peer,
    umw: point.umw,
    memory: point.memory,
    load_s: point.load_s,
    load1: point.load1,
    loadavg: loadavg(),
    date: point.date,
    command,
    duration_s: 0,
  };
}

async function writesCurve(): Promise<string> {
  const started = performance.now();
  const file = newFile("writes", { name: "processor instances", unit: "processes", sizes: PROCESSORS }, "commands visible in Redis per second (open loop at BENCH_RATE)", "CPU µs per visible command of the pipeline processes (command, relay, processors, cache updater)");
  for (const processors of PROCESSORS) {
    const env = pointEnv(WRITE_ENV, { BENCH_PROCESSORS: String(processors) });
    const command = commandLine(env, "bench:write");
    progress(`[${++step}/${totalSteps}] writes: ${processors} processor instance(s): ${command}`);
    const pointStarted = performance.now();
    try {
      const result = await runBench("write.ts", env);
      const visible = result.visible as Record<string, any>;
      const cpu = visible.cpu_percent_of_one_core as Record<string, number>;
      const pipelineCpu = Object.entries(cpu).filter(([name]) => name !== "bench").reduce((sum, [, pct]) => sum + pct, 0);
      const processorCpu = Object.entries(cpu).filter(([name]) => name.startsWith("processor")).reduce((sum, [, pct]) => sum + pct, 0);
      const seen = visible.commands - visible.never_visible - visible.accept_errors;
      const visiblePerS = round((visible.offered_per_s * seen) / Math.max(1, visible.commands), 1);
      // Per command that became visible: under overload, commands refused at the accept cost CPU too, and are counted here.
      const perCommand = (pct: number) => Math.round(((pct / 100) * 1e6) / Math.max(1, visiblePerS));
      const visibleLoad = (result.load as { phase: string; load1: number }[]).filter((sample) => sample.phase === "visible").map((sample) => sample.load1);
      file.points.push({
        size: processors,
        throughput: visiblePerS,
        p50_ms: visible.visible_p50_ms,
        p99_ms: visible.visible_p99_ms,
        cpu_us_per_op: perCommand(pipelineCpu),
        processors_cpu_us_per_command: perCommand(processorCpu),
        cpu_percent_of_one_core: cpu,
        offered_per_s: visible.offered_per_s,
        never_visible: visible.never_visible,
        accept_errors: visible.accept_errors,
        stages: visible.stages,
        baseline: { pg_insert_commit_rps: result.pg_insert_commit_rps, accept_rps: result.accept_rps, ratio_accept_to_pg: result.ratio_accept_to_pg },
        load1: visibleLoad[0] ?? loadavg()[0]!,
        loadavg: result.machine.loadavg_after,
        date: result.generated_at,
        command,
        duration_s: round((performance.now() - pointStarted) / 1000, 1),
      });
      progress(`writes: ${processors} processor(s): ${visiblePerS} visible/s of ${visible.offered_per_s} offered, accept→visible p50 ${visible.visible_p50_ms} / p99 ${visible.visible_p99_ms} ms, ${perCommand(pipelineCpu)} µs CPU/command; floor ${result.pg_insert_commit_rps} INSERT+COMMIT/s, accept ${result.accept_rps}/s`);
    } catch (error) {
      progress(`writes: ${processors} processor(s) failed: ${(error as Error).message.slice(0, 300)}`);
      file.points.push(failedPoint(processors, command, pointStarted, error));
    }
    save(file, started);
  }
  file.notes.push(
    "Each point is a run of bench:write (bench/write.ts) with BENCH_PROCESSORS processor instances (`umw serve processor` children in one consumer group, sharing the topic's partitions): " +
      "one accept round (CreateEntity accepts/s against the same-run floor of single-row INSERT+COMMIT through pg), then the visible phase: an open loop at BENCH_RATE commands/s, accept → visible in Redis on server-side clocks. " +
      "throughput = commands seen in Redis / the phase's seconds (it follows the offered rate until the pipeline saturates); cpu_us_per_op = CPU of command, relay, processors and cache updater per command that became visible (commands refused at the accept under overload cost CPU too and are in it; accept_errors says how many).",
  );
  return save(file, started);
}

async function fanoutCurve(): Promise<string> {
  const started = performance.now();
  const file = newFile("fanout", { name: "Subscribe streams", unit: "streams", sizes: STREAMS }, "deliveries/s (changes received by the streams)", "hub CPU µs per delivery");
  for (const streams of STREAMS) {
    // More streams per HTTP/2 connection than a few thousand make the load client, not the hub, the bottleneck.
    const env = pointEnv({ ...FANOUT_ENV, BENCH_CONNECTIONS: String(Math.max(4, Math.ceil(streams / 2 / 2_500))) }, { BENCH_STREAMS: String(streams) });
    const command = commandLine(env, "bench:fanout");
    progress(`[${++step}/${totalSteps}] fanout: ${streams.toLocaleString("en-US")} streams: ${command}`);
    const pointStarted = performance.now();
    try {
      const result = await runBench("fanout.ts", env);
      const r = result.results as Record<string, number>;
      const figure = (value: number | undefined) => (value === undefined || !Number.isFinite(value) ? null : value);
      file.points.push({
        size: streams,
        streams_open: r.streams,
        throughput: figure(r.delivered_per_s),
        p50_ms: figure(r.p50_ms),
        p99_ms: figure(r.p99_ms),
        cpu_us_per_op: result.capacity.hub_cpu_us_per_delivery,
        rss_kb_per_stream: r.rss_kb_per_stream,
        lost: r.lost,
        hub_cores_used: result.capacity.hub_cores_used,
        baseline: { kafka_consumer_p50_ms: result.baseline.kafka_consumer.p50_ms, kafka_consumer_p99_ms: result.baseline.kafka_consumer.p99_ms, hub_added_p50_ms: result.baseline.hub_added_p50_ms, hub_added_p99_ms: result.baseline.hub_added_p99_ms },
        held_on_this_machine: result.held_on_this_machine,
        targets: result.targets,
        load1: result.capacity.loadavg_during_main_phase[0],
        loadavg: result.capacity.loadavg_during_main_phase,
        date: result.date,
        command,
        duration_s: round((performance.now() - pointStarted) / 1000, 1),
      });
      progress(`fanout: ${r.streams}/${streams} streams: ${r.delivered_per_s} deliveries/s, p50 ${r.p50_ms} / p99 ${r.p99_ms} ms (bare Kafka consumer p99 ${result.baseline.kafka_consumer.p99_ms}), ${result.capacity.hub_cpu_us_per_delivery} µs hub CPU/delivery, ${r.rss_kb_per_stream} KB/stream, lost ${r.lost}`);
    } catch (error) {
      progress(`fanout: ${streams} streams failed: ${(error as Error).message.slice(0, 300)}`);
      file.points.push(failedPoint(streams, command, pointStarted, error));
    }
    save(file, started);
  }
  // Say which sizes the hub did not hold here: fewer deliveries than offered, or any lost.
  for (const point of file.points) {
    const offered = (Number(env(FANOUT_ENV, "BENCH_RATE")) * point.size) / Number(env(FANOUT_ENV, "BENCH_ENTITIES"));
    if (point.error) file.notes.push(`${point.size} streams: not measured (${String(point.error).slice(0, 200)}).`);
    else if ((point.throughput ?? 0) < 0.9 * offered || Number(point.lost) > 0) {
      file.notes.push(
        `${point.size} streams: NOT held on this machine at load ${point.load1} on ${os.cpus().length} cpus: ${point.throughput} of ${offered} deliveries/s, p99 ${point.p99_ms} ms, ${point.lost} deliveries lost (${point.streams_open} streams open); the largest size held in this run: ${
          file.points.filter((p) => !p.error && (p.throughput ?? 0) >= 0.9 * ((Number(env(FANOUT_ENV, "BENCH_RATE")) * p.size) / Number(env(FANOUT_ENV, "BENCH_ENTITIES"))) && Number(p.lost) === 0).map((p) => p.size).pop() ?? "none"
        } streams.`,
      );
    }
  }
  file.notes.push(
    `Each point is a run of bench:fanout (bench/fanout.ts) with BENCH_STREAMS streams over ${FANOUT_ENV.BENCH_ENTITIES} entities at a fixed ${FANOUT_ENV.BENCH_RATE} events/s, so deliveries/s = rate × streams / entities: the work grows with the streams. ` +
      "Baseline: the same events through a bare Kafka consumer in the same run. streams_open is what the hub held (the bench goes on with fewer when the machine holds no more).",
  );
  return save(file, started);
}

async function main(): Promise<void> {
  progress(`${chosen.join(", ")}: ${totalSteps} points on ${os.cpus().length} cpus, load ${loadavg().join(" / ")}`);
  const written: string[] = [];
  for (const curve of chosen as Curve[]) written.push(curve === "reads" ? await readsCurve() : curve === "writes" ? await writesCurve() : await fanoutCurve());
  progress(`done in ${round(seconds() / 60, 1)} min; wrote ${written.map((path) => path.slice(HERE.length + 1)).join(", ")}; draw them: npm run bench:charts`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(`bench:curves failed: ${(error as Error).stack ?? error}`);
    process.exit(1);
  },
);
