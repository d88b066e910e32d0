import { serviceAddress, type Config } from "../../runtime/config.js";
import type { ServiceModule, ServiceRuntime } from "../../runtime/service.js";
import { clientCredentials } from "../../runtime/tls.js";
import { Canary, type CanaryResult } from "./canary.js";

export { Canary, CANARY_STAGES, type CanaryOptions, type CanaryResult, type CanaryStage } from "./canary.js";

/** A canary on the mesh's services, as the mesh identity `canary` (mTLS), with the configured token if any. */
export function canaryFor(config: Config, identity: ReturnType<ServiceRuntime["identity"]>): Canary {
  return new Canary({
    query: { address: serviceAddress(config, "query"), credentials: clientCredentials(identity, "query") },
    command: { address: serviceAddress(config, "command"), credentials: clientCredentials(identity, "command") },
    realtime: { address: serviceAddress(config, "realtime"), credentials: clientCredentials(identity, "realtime") },
    tenant: config.canaryTenant,
    type: config.canaryType,
    entityId: "canary",
    timeoutMs: config.canaryTimeoutMs,
    token: config.canaryToken,
  });
}

/** Runs the canary every `interval` ms until stopped; each result goes to `onResult`. */
export function runCanaryLoop(canary: Canary, intervalMs: number, onResult: (result: CanaryResult) => void): { stop(): Promise<void> } {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let current: Promise<unknown> = Promise.resolve();
  const tick = () => {
    current = canary.runOnce().then((result) => {
      onResult(result);
      if (!stopped) timer = setTimeout(tick, intervalMs);
    });
  };
  tick();
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await current;
      canary.close();
    },
  };
}

/** `umw serve canary`: end-to-end transactions at UMW_CANARY_INTERVAL_MS, exported as `umw_canary_*`. */
export const canaryService: ServiceModule = {
  name: "canary",
  description: "End-to-end prober: write, applied, read back, received; umw_canary_* metrics",
  async start(runtime) {
    const { config, log } = runtime;
    const canary = canaryFor(config, runtime.identity("canary"));
    const loop = runCanaryLoop(canary, config.canaryIntervalMs, (result) => {
      if (result.ok) log.debug({ seconds: result.seconds, version: result.version }, "canary transaction succeeded");
      else log.warn({ stage: result.failedStage, error: result.error }, "canary transaction failed");
    });
    return { name: "canary", stop: () => loop.stop() };
  },
};
