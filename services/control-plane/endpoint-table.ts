import { ROUTED_SERVICES, type Endpoint, type RoutedService } from "./edge-resources.js";

/**
 * The running instances of each routed service, as they registered. An instance counts once per
 * open registration (a restarted instance may briefly hold two); it leaves with its last one.
 */
export class EndpointTable {
  private readonly table = new Map<RoutedService, Map<string, { endpoint: Endpoint; registrations: number }>>(ROUTED_SERVICES.map((service) => [service, new Map()]));

  constructor(private readonly onChange: () => void) {}

  add(service: RoutedService, endpoint: Endpoint): void {
    const instances = this.table.get(service)!;
    const key = keyOf(endpoint);
    const entry = instances.get(key);
    if (entry) entry.registrations += 1;
    else {
      instances.set(key, { endpoint, registrations: 1 });
      this.onChange();
    }
  }

  /** One registration ended; `all` drops the instance whatever else holds it (Deregister). */
  remove(service: RoutedService, endpoint: Endpoint, all = false): boolean {
    const instances = this.table.get(service)!;
    const key = keyOf(endpoint);
    const entry = instances.get(key);
    if (!entry) return false;
    entry.registrations -= 1;
    if (entry.registrations > 0 && !all) return false;
    instances.delete(key);
    this.onChange();
    return true;
  }

  endpoints(service: RoutedService): Endpoint[] {
    return [...this.table.get(service)!.values()].map((entry) => entry.endpoint).sort((a, b) => keyOf(a).localeCompare(keyOf(b)));
  }
}

export function keyOf(endpoint: Endpoint): string {
  return endpoint.host.includes(":") ? `[${endpoint.host}]:${endpoint.port}` : `${endpoint.host}:${endpoint.port}`;
}
