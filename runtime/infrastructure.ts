import type { EventBus } from "./bus.js";
import type { Cache } from "./cache/cache.js";
import type { Logger } from "./logger.js";
import type { DatabaseUser } from "./pg-roles.js";
import { closeStack } from "./service.js";
import type { Database } from "./sql.js";

/**
 * The stores a process runs on, behind their ports: what every service's `start(runtime)` gets
 * (ServiceRuntime.infrastructure) and wires itself on, the same way whichever services share the
 * process and whichever factory made it. Each store is opened at its first use, once per process,
 * shared by the services in it, and closed by `close()` (after the services stopped), newest first.
 *
 * Factories: runtime/infrastructure-real.ts (Postgres pools, Kafka, Redis) and
 * services/embedded/index.ts (PGlite, the in-process bus, the in-memory cache).
 */
export interface Infrastructure {
  /** "real" or "embedded": for logs. */
  readonly kind: string;
  /**
   * The primary: statements, transactions, sessions for advisory locks and LISTEN/NOTIFY
   * (Database.openSession). Proven reachable before it resolves (UNAVAILABLE when it is not).
   * `service`: whose role to connect as when per-service roles are configured (runtime/pg-roles.ts).
   */
  primary(service?: DatabaseUser): Promise<Database>;
  /** The read replica: not waited for, so reads may start degraded and recover when it comes. */
  replica(service?: DatabaseUser): Database;
  /** The event bus, connected (UNAVAILABLE when the brokers cannot be reached). */
  bus(): Promise<EventBus>;
  /** The cache; `required`: wait until it answers (UNAVAILABLE when it does not), else it may start degraded. */
  cache(options?: { readonly required?: boolean }): Promise<Cache>;
  /** Where the stores are, for messages: e.g. `Postgres primary at postgres://umw:***@host/db`. */
  readonly labels: { readonly primary: string; readonly bus: string };
  /** Closes what was opened; stop the services first. */
  close(): Promise<void>;
}

/** The lazy, once-per-process opening and the one close stack that the factories share. */
export function lazyStores(log: Logger): {
  once<T>(open: () => Promise<T>, close: (value: T) => Promise<unknown>): () => Promise<T>;
  onceSync<T>(open: () => T, close: (value: T) => Promise<unknown>): () => T;
  close(): Promise<void>;
} {
  const stack = closeStack(log);
  return {
    once(open, close) {
      let opening: ReturnType<typeof open> | undefined;
      return () =>
        (opening ??= open().then(
          (value) => {
            stack.push(() => close(value));
            return value;
          },
          (error: unknown) => {
            opening = undefined; // a later start may try again
            throw error;
          },
        ));
    },
    onceSync(open, close) {
      let opened: { value: ReturnType<typeof open> } | undefined;
      return () => {
        if (!opened) {
          opened = { value: open() };
          const value = opened.value;
          stack.push(() => close(value));
        }
        return opened.value;
      };
    },
    close: () => stack.closeAll(),
  };
}
