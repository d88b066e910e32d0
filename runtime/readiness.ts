/**
 * What this process knows of its own readiness: each service it runs (starting, ready, failed) and
 * each dependency its adapters reach (Postgres primary/replica, Redis, Kafka consumer groups), as
 * the adapters last saw them. The edge's `/readyz` reports it next to the upstreams' gRPC health,
 * so a caller sees *which* piece is missing, not just that one is.
 *
 * Several adapters may report the same dependency (every service of `umw serve all` has its own
 * pool on the primary): the dependency is ready only while every reporter says so.
 */
export type ReadinessState = "READY" | "NOT_READY";

export interface ReadinessEntry {
  readonly state: ReadinessState;
  /** Why it is not ready (the last error), for the `/readyz` body. */
  readonly detail?: string;
  /** Epoch ms of the last change. */
  readonly since: number;
}

export interface Reporter {
  ready(): void;
  notReady(detail: string): void;
  /** The reporter goes away (its pool closed): it no longer holds the dependency back. */
  remove(): void;
}

class ReadinessRegistry {
  private readonly reports = new Map<string, Map<symbol, ReadinessEntry>>();

  reporter(kind: "service" | "dependency", name: string): Reporter {
    const key = `${kind}:${name}`;
    const id = Symbol(key);
    const set = (entry: ReadinessEntry) => {
      let map = this.reports.get(key);
      if (!map) this.reports.set(key, (map = new Map()));
      const previous = map.get(id);
      if (previous && previous.state === entry.state && previous.detail === entry.detail) return;
      map.set(id, previous?.state === entry.state ? { ...entry, since: previous.since } : entry);
    };
    return {
      ready: () => set({ state: "READY", since: Date.now() }),
      notReady: (detail) => set({ state: "NOT_READY", detail, since: Date.now() }),
      remove: () => {
        const map = this.reports.get(key);
        map?.delete(id);
        if (map?.size === 0) this.reports.delete(key);
      },
    };
  }

  /** Every service and dependency, the worst report of each. */
  snapshot(): { services: Record<string, ReadinessEntry>; dependencies: Record<string, ReadinessEntry> } {
    const services: Record<string, ReadinessEntry> = {};
    const dependencies: Record<string, ReadinessEntry> = {};
    for (const [key, map] of this.reports) {
      const [kind, ...rest] = key.split(":");
      const name = rest.join(":");
      const entries = [...map.values()];
      const worst = entries.find((entry) => entry.state === "NOT_READY") ?? entries[0];
      if (!worst) continue;
      (kind === "service" ? services : dependencies)[name] = worst;
    }
    return { services, dependencies };
  }
}

/** One registry per process: the services of `umw serve` share it. */
export const processReadiness = new ReadinessRegistry();
