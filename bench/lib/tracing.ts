// The benches' tracing switch. BENCH_TRACING lists the variants to measure: `off` (no SDK, the
// default) or a sampling ratio (`0.1`, `1`: the umw processes export spans to BENCH_OTLP_ENDPOINT,
// default Jaeger's http://127.0.0.1:14317 from `scripts/infra.sh jaeger`). With several variants
// (`BENCH_TRACING=off,0.1,1`) the bench runs itself once per variant, one after the other in the
// same invocation, each writing results/<bench>-tracing-<variant>.json, and prints their summaries
// side by side.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";

const VARIANTS = (process.env.BENCH_TRACING ?? "off")
  .split(",")
  .map((variant) => variant.trim())
  .filter(Boolean);
for (const variant of VARIANTS) {
  if (variant !== "off" && !(Number(variant) >= 0 && Number(variant) <= 1)) throw new Error(`BENCH_TRACING: "${variant}" is neither off nor a ratio between 0 and 1`);
}

/** The variant this process measures (the only one, when it is not the driver of several). */
export const TRACING = VARIANTS.length === 1 ? VARIANTS[0]! : undefined;

/** The environment of the umw processes for this variant: tracing off, or on at its ratio. */
export function tracingEnv(): NodeJS.ProcessEnv {
  if (!TRACING || TRACING === "off") return { UMW_OTLP_ENDPOINT: "" };
  return { UMW_OTLP_ENDPOINT: process.env.BENCH_OTLP_ENDPOINT ?? "http://127.0.0.1:14317", UMW_TRACE_SAMPLE_RATIO: TRACING };
}

/**
 * results/<bench>.json, or results/<bench>-tracing-<variant>.json when BENCH_TRACING names the
 * variant; BENCH_RESULTS_FILE (a single run, e.g. one point of `npm run bench:curves`) overrides both.
 */
export function resultsPath(resultsDir: string, bench: string, variant = TRACING): string {
  if (process.env.BENCH_RESULTS_FILE && VARIANTS.length < 2) return process.env.BENCH_RESULTS_FILE;
  return join(resultsDir, process.env.BENCH_TRACING ? `${bench}-tracing-${variant}.json` : `${bench}.json`);
}

/**
 * With several variants: runs `script` once per variant and prints each run's `summary` fields;
 * returns true (the caller exits). With one variant: false (the caller measures it).
 */
export function runTracingVariants(script: string, bench: string, summary: (results: Record<string, unknown>) => Record<string, unknown>): boolean {
  if (VARIANTS.length < 2) return false;
  const rows: Record<string, unknown>[] = [];
  for (const variant of VARIANTS) {
    console.log(`\n==== ${bench}: tracing ${variant} ====`);
    const run = spawnSync(process.execPath, ["--import", "tsx", script], { stdio: "inherit", env: { ...process.env, BENCH_TRACING: variant } });
    if (run.status !== 0) throw new Error(`${bench} with tracing ${variant} exited with ${run.status ?? run.signal}`);
    const results = JSON.parse(readFileSync(resultsPath(join(dirname(script), "results"), bench, variant), "utf8")) as Record<string, unknown>;
    rows.push({ tracing: variant, ...summary(results) });
  }
  console.log(`\n${bench}: tracing overhead (each row a run of its own, in this order)`);
  console.table(rows);
  return true;
}
