// npm run bench:span-cost — what a recorded span costs, in CPU time, with runtime/telemetry.ts as it
// is (NodeSDK, batch span processor, OTLP gRPC export to BENCH_OTLP_ENDPOINT): traces shaped like a
// sampled cache-hit read through the edge (edge HTTP SERVER, edge gRPC CLIENT, QueryService SERVER;
// BENCH_SPAN_REDIS=1 adds the Redis GET span a hit made before runtime/cache/lookup-tracing.ts), made
// in one process at a steady pace, the CPU counted until the SDK has exported them all (shutdown);
// and the declined new trace (runtime/interceptor-tracing.ts `enterTrace` at ratio 0).
// Knobs: BENCH_SPAN_TRACES (20,000), BENCH_SPAN_PACE (100 traces per 15 ms, so the queue is never
// full and no span is dropped), BENCH_SPAN_ROUNDS (3: each round a process of its own, the least counts),
// BENCH_OTLP_ENDPOINT (Jaeger's http://127.0.0.1:14317). BENCH_CPU_PROF=dir: a V8 profile of each process.
import { spawnSync } from "node:child_process";
import os from "node:os";
import { fileURLToPath } from "node:url";

const env = (name: string, fallback: number) => (process.env[name] ? Number(process.env[name]) : fallback);
const TRACES = env("BENCH_SPAN_TRACES", 20_000);
const PACE = env("BENCH_SPAN_PACE", 100);
const ROUNDS = env("BENCH_SPAN_ROUNDS", 3);
const REDIS_SPAN = process.env.BENCH_SPAN_REDIS === "1";
const OTLP = process.env.BENCH_OTLP_ENDPOINT ?? "http://127.0.0.1:14317";
const DECLINED = 1_000_000;

interface Result {
  readonly usPerTrace: number;
  readonly spansPerTrace: number;
  readonly nsPerDeclinedTrace: number;
}

async function measure(): Promise<void> {
  const { context, SpanKind, trace } = await import("@opentelemetry/api");
  const { startTelemetry } = await import("../runtime/telemetry.js");
  const { enterTrace } = await import("../runtime/interceptor-tracing.js");
  const sampled = startTelemetry({ otlpEndpoint: OTLP, traceSampleRatio: 1 }, "umw-bench-span-cost");
  const tracer = trace.getTracer("umw.rpc");
  const rpc = { "rpc.system": "grpc", "rpc.service": "umw.v1.QueryService", "rpc.method": "GetEntity" };

  const oneTrace = async () => {
    const entry = enterTrace({}, () => "GET /v1/tenants/{tenant}/types/{type}/entities/{id}");
    if (entry?.span === undefined) throw new Error("not sampled at ratio 1");
    entry.span.setAttributes({ "http.request.method": "GET", "http.route": "/v1/tenants/{tenant}/types/{type}/entities/{id}", "network.protocol.version": "1.1" });
    await context.with(entry.context, async () => {
      const client = tracer.startSpan("umw.v1.QueryService/GetEntity", { kind: SpanKind.CLIENT, attributes: rpc });
      const server = tracer.startSpan("umw.v1.QueryService/GetEntity", { kind: SpanKind.SERVER, attributes: rpc }, trace.setSpan(context.active(), client));
      const redis = REDIS_SPAN
        ? tracer.startSpan("get", {
            kind: SpanKind.CLIENT,
            attributes: { "db.system.name": "redis", "db.operation.name": "get", "db.query.text": "get umw:bench:item:e1", "server.address": "127.0.0.1", "server.port": 16379 },
          }, trace.setSpan(context.active(), server))
        : undefined;
      await Promise.resolve();
      redis?.end();
      server.setAttribute("umw.cache.hit", true);
      server.setAttribute("rpc.grpc.status_code", 0);
      server.end();
      client.setAttribute("rpc.grpc.status_code", 0);
      client.end();
    });
    entry.span.setAttribute("http.response.status_code", 200);
    entry.span.end();
  };
  const paced = async (count: number) => {
    for (let i = 1; i <= count; i++) {
      await oneTrace();
      if (i % PACE === 0) await new Promise((resolve) => setTimeout(resolve, 15));
    }
  };

  await paced(5_000); // JIT warm-up, exported before the measured window
  await new Promise((resolve) => setTimeout(resolve, 6_000));
  const cpu = process.cpuUsage();
  await paced(TRACES);
  await sampled.shutdown(); // every span exported
  const used = process.cpuUsage(cpu);

  const { setCallTracing } = await import("../runtime/interceptor-tracing.js");
  const { NewTraceSampler } = await import("../runtime/new-trace-sampling.js");
  setCallTracing(true, new NewTraceSampler(0));
  for (let i = 0; i < DECLINED; i++) enterTrace({}, () => "x");
  const declinedCpu = process.cpuUsage();
  for (let i = 0; i < DECLINED; i++) enterTrace({}, () => "x");
  const declined = process.cpuUsage(declinedCpu);

  const result: Result = {
    usPerTrace: Math.round(((used.user + used.system) / TRACES) * 10) / 10,
    spansPerTrace: REDIS_SPAN ? 4 : 3,
    nsPerDeclinedTrace: Math.round(((declined.user + declined.system) * 1000) / DECLINED),
  };
  console.log(JSON.stringify(result));
  process.exit(0);
}

function main(): void {
  let best: Result | undefined;
  for (let round = 0; round < ROUNDS; round++) {
    const run = spawnSync(process.execPath, [...(process.env.BENCH_CPU_PROF ? ["--cpu-prof", "--cpu-prof-dir", process.env.BENCH_CPU_PROF] : []), "--import", "tsx", fileURLToPath(import.meta.url)], {
      env: { ...process.env, BENCH_SPAN_CHILD: "1" },
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
    });
    const line = run.stdout.split("\n").find((text) => text.startsWith("{"));
    if (run.status !== 0 || !line) throw new Error(`round ${round + 1} exited with ${run.status ?? run.signal}: ${run.stdout}`);
    const result = JSON.parse(line) as Result;
    console.log(`round ${round + 1}: ${result.usPerTrace} µs per sampled trace of ${result.spansPerTrace} spans, ${result.nsPerDeclinedTrace} ns per declined new trace (load ${os.loadavg()[0]!.toFixed(2)})`);
    if (!best || result.usPerTrace < best.usPerTrace) best = { ...result, nsPerDeclinedTrace: Math.min(result.nsPerDeclinedTrace, best?.nsPerDeclinedTrace ?? Infinity) };
  }
  console.log(
    `least of ${ROUNDS}: ${best!.usPerTrace} µs per sampled trace of ${best!.spansPerTrace} spans (${Math.round((best!.usPerTrace / best!.spansPerTrace) * 10) / 10} µs a span, export included), ${best!.nsPerDeclinedTrace} ns per declined new trace`,
  );
}

if (process.env.BENCH_SPAN_CHILD) await measure();
else main();
