import { Authorization } from "../../gen/envoy/service/auth/v3/external_auth_pb.js";
import { startMeshServer, type ServiceModule } from "../../runtime/service.js";
import { AuthzPolicy } from "./authz-policy.js";
import { extAuthzHandlers } from "./ext-authz.js";
import { configuredPolicy } from "./configured-policy.js";

export { AuthzPolicy, DEFAULT_POLICY_WASM, POLICY_ENTRYPOINT, sharedAuthzPolicy, type Decision, type PolicyInput, type PolicyTopic } from "./authz-policy.js";
export { serverAuthorization } from "./authorization-interceptor.js";
export { extAuthzHandlers } from "./ext-authz.js";
export { configuredPolicy, policyInterceptors } from "./configured-policy.js";
export { opaSubscriptionPolicy } from "./subscription-policy.js";

/**
 * `umw serve policy`: Envoy's external authorization (envoy.service.auth.v3.Authorization/Check)
 * over mTLS, deciding with the same compiled policy the mesh servers evaluate in-process.
 */
export const policyService: ServiceModule = {
  name: "policy",
  description: "Authorization decisions for Envoy (ext_authz) from the OPA policy",
  async start(runtime) {
    const { config } = runtime;
    // Envoy's check is the one place a request is authorized before a service sees it: even with
    // UMW_AUTHORIZATION=off for the mesh servers, this service decides with the policy.
    const policy = (await configuredPolicy(config)) ?? (await AuthzPolicy.load());
    const server = await startMeshServer(runtime, {
      name: "policy",
      port: config.policyPort,
      service: Authorization,
      handlers: extAuthzHandlers(policy, new Set(config.trustedPrincipalPeers)),
    });
    return { name: "policy", stop: () => server.stop() };
  },
};
