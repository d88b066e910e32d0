import { setTimeout as sleep } from "node:timers/promises";
import { RegistrationService } from "../../gen/umw/controlplane/v1/registration_pb.js";
import { createClient } from "../../runtime/client.js";
import { Code, RpcError } from "../../runtime/errors.js";
import type { Logger } from "../../runtime/logger.js";
import { clientCredentials, type MeshIdentity } from "../../runtime/tls.js";

/** The name the control plane's certificate must carry. */
const CONTROL_PLANE_IDENTITY = "control-plane";

export interface InstanceRegistration {
  /** Deregisters (waiting, bounded, until Envoy stopped sending here), then closes the stream. */
  leave(): Promise<void>;
}

/**
 * Keeps this instance registered with the control plane while it serves: one Register stream,
 * reopened with backoff when it breaks (control plane restarted, network lost).
 */
export function registerInstance(options: {
  readonly controlPlane: string;
  readonly identity: MeshIdentity;
  readonly service: string;
  readonly host: string;
  readonly port: number;
  readonly log: Logger;
}): InstanceRegistration {
  const { log } = options;
  const client = createClient(RegistrationService, options.controlPlane, clientCredentials(options.identity, CONTROL_PLANE_IDENTITY));
  const request = { service: options.service, host: options.host, port: options.port };
  const stopped = new AbortController();
  const loop = (async () => {
    let delayMs = 250;
    while (!stopped.signal.aborted) {
      try {
        for await (const response of client.register(request, { signal: stopped.signal })) {
          log.info({ controlPlane: options.controlPlane, endpoint: response.endpoint }, "registered with the control plane");
          delayMs = 250;
        }
      } catch (error) {
        if (stopped.signal.aborted) break;
        if (error instanceof RpcError && (error.code === Code.INVALID_ARGUMENT || error.code === Code.PERMISSION_DENIED)) {
          log.error({ controlPlane: options.controlPlane, err: error.message, reason: error.reason }, "the control plane refuses this instance");
          return;
        }
        log.warn({ controlPlane: options.controlPlane, err: (error as Error).message, retryInMs: delayMs }, "control plane registration lost");
      }
      await sleep(delayMs, undefined, { signal: stopped.signal }).catch(() => undefined);
      delayMs = Math.min(delayMs * 2, 5_000);
    }
  })();
  return {
    async leave() {
      try {
        const { applied } = await client.deregister(request, { timeoutMs: 10_000 });
        if (!applied) log.warn("deregistered, but not every Envoy confirmed it in time");
      } catch (error) {
        log.warn({ err: (error as Error).message }, "control plane deregistration failed");
      }
      stopped.abort();
      await loop;
      client.close();
    },
  };
}
