/** The mesh services Envoy routes to (policy: its ext_authz checks), by cluster name (= the service's mTLS identity). */
export const ROUTED_SERVICES = ["query", "command", "realtime", "policy"] as const;
export type RoutedService = (typeof ROUTED_SERVICES)[number];

export function isRouted(name: string): name is RoutedService {
  return (ROUTED_SERVICES as readonly string[]).includes(name);
}
