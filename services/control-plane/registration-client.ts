import { RegistrationService } from "../../gen/umw/controlplane/v1/registration_pb.js";
import { createClient } from "../../runtime/client.js";
import { Code, RpcError } from "../../runtime/errors.js";
import type { Logger } from "../../runtime/logger.js";
import { withRetry } from "../../runtime/retry.js";
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
  const refused = (error: unknown) => error instanceof RpcError && (error.code === Code.INVALID_ARGUMENT || error.code === Code.PERMISSION_DENIED);

  /** One Register stream, held while it lasts. Throws when it broke before registering (retried with backoff); resolves when a registered stream ended, to reconnect afresh. */
  async function holdRegistration(): Promise<void> {
    let registered = false;
    try {
      for await (const response of client.register(request, { signal: stopped.signal })) {
        log.info({ controlPlane: options.controlPlane, endpoint: response.endpoint }, "registered with the control plane");
        registered = true;
      }
    } catch (error) {
      if (!registered || refused(error) || stopped.signal.aborted) throw error;
      log.warn({ controlPlane: options.controlPlane, err: (error as Error).message }, "control plane registration lost; reconnecting");
      return;
    }
    if (!registered) throw new Error("the control plane ended the registration stream");
  }

  const loop = (async () => {
    while (!stopped.signal.aborted) {
      try {
        await withRetry(holdRegistration, {
          initialDelayMs: 250,
          maxDelayMs: 5_000,
          shouldRetry: (error) => !refused(error),
          onRetry: (error, _attempt, delayMs) =>
            log.warn({ controlPlane: options.controlPlane, err: (error as Error).message, retryInMs: delayMs }, "control plane registration lost"),
          signal: stopped.signal,
        });
      } catch (error) {
        if (stopped.signal.aborted) return;
        const { message, reason } = error as RpcError;
        log.error({ controlPlane: options.controlPlane, err: message, reason }, "the control plane refuses this instance");
        return;
      }
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
