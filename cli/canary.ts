import type { Config } from "../runtime/config.js";
import { defaultRegistry, serveMetrics } from "../runtime/metrics.js";
import { loadIdentity } from "../runtime/tls.js";
import { canaryFor, runCanaryLoop, type CanaryResult } from "../services/canary/index.js";
import { metricsPortOf } from "../services/registry.js";

/**
 * `umw canary [--once] [--json]`: end-to-end transactions against a running mesh, as the mesh
 * identity `canary` (its certificate in UMW_CERTS_DIR) and with UMW_CANARY_TOKEN if set. --once:
 * one transaction, exit 0 when it succeeded, 1 when not. Otherwise one every UMW_CANARY_INTERVAL_MS,
 * a line each, with `umw_canary_*` on the canary's metrics port (UMW_METRICS_PORT + 7) until Ctrl-C.
 */
export async function runCanary(config: Config, args: string[]): Promise<number> {
  const json = args.includes("--json");
  const canary = canaryFor(config, loadIdentity(config.certsDir, "canary"));
  const print = (result: CanaryResult) => console.log(json ? JSON.stringify(result) : describe(result));
  if (args.includes("--once")) {
    const result = await canary.runOnce();
    canary.close();
    print(result);
    return result.ok ? 0 : 1;
  }
  const identity = loadIdentity(config.certsDir, "canary");
  const metrics = await serveMetrics(config.metricsHost, metricsPortOf(config.metricsPort, ["canary"]), defaultRegistry, config.metricsTls ? identity : undefined);
  if (!json) console.log(`canary: every ${config.canaryIntervalMs} ms on ${config.canaryTenant}/${config.canaryType}; metrics on ${metrics.url}`);
  const loop = runCanaryLoop(canary, config.canaryIntervalMs, print);
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  await loop.stop();
  await metrics.close();
  return 0;
}

function describe(result: CanaryResult): string {
  const ms = Object.entries(result.seconds)
    .map(([stage, seconds]) => `${stage} ${Math.round(seconds * 1000)} ms`)
    .join(", ");
  return result.ok ? `ok   ${result.entityId} v${result.version}: ${ms}` : `FAIL ${result.entityId} at ${result.failedStage}: ${result.error}${ms ? ` (${ms})` : ""}`;
}
