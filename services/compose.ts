import type { Config } from "../runtime/config.js";
import type { Infrastructure } from "../runtime/infrastructure.js";
import type { Logger } from "../runtime/logger.js";
import { createRuntime, type ServiceRuntime } from "../runtime/service.js";
import { isRouted } from "./control-plane/routed-services.js";
import { registerInstance } from "./control-plane/registration-client.js";
import { policyInterceptors } from "./policy/configured-policy.js";

/**
 * The runtime the services of a process share, as the composition root builds it once: the mesh
 * servers' policy interceptor (OPA, unless UMW_AUTHORIZATION=off) and, with a control plane
 * (UMW_CONTROL_PLANE_ADDRESS), each routed service registered as one of Envoy's endpoints while it
 * serves (withdrawn before its server drains).
 */
export async function composeRuntime(config: Config, log: Logger, infrastructure: Infrastructure): Promise<ServiceRuntime> {
  const controlPlane = config.controlPlaneAddress;
  return createRuntime(config, log, infrastructure, {
    serverInterceptors: await policyInterceptors(config),
    ...(controlPlane && {
      async announce(service, port, identity) {
        if (!isRouted(service)) return undefined;
        const registration = registerInstance({ controlPlane, identity, service, host: config.host, port, log });
        return () => registration.leave();
      },
    }),
  });
}
