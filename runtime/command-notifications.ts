import type { OpenSession, DbSession } from "./db-session.js";
import type { Logger } from "./logger.js";
import { COMMAND_CHANNEL } from "./outbox.js";
import { withRetry } from "./retry.js";

/** Where command ids arrive: NOTIFY on `umw_command` (payload: the command id), however the database delivers it. */
export type CommandNotifications = (onId: (id: string) => void, hooks?: NotificationHooks) => Promise<{ stop(): Promise<void> }>;

export interface NotificationHooks {
  /** The LISTEN session is (again) up: notifications sent while it was down were missed. */
  onConnected?(): void;
}

/**
 * The one LISTEN loop of a process's command notifications (WatchCommand in the command service,
 * the realtime hub's command feed): a session of its own, reopened when it is lost (at once, then
 * with backoff up to 5 s while Postgres refuses; a PGlite session is never lost). The first
 * connection is made before this resolves (a failure is thrown to the caller).
 */
export function commandNotifications(openSession: OpenSession, log: Logger): CommandNotifications {
  return async (onId, hooks) => {
    let session: DbSession | undefined;
    const stopping = new AbortController();
    const connect = async (): Promise<void> => {
      const next = await openSession();
      try {
        await next.listen(COMMAND_CHANNEL, (payload) => {
          if (payload) onId(payload);
        });
      } catch (error) {
        await next.release();
        throw error;
      }
      if (stopping.signal.aborted) {
        await next.release();
        return;
      }
      session = next;
      hooks?.onConnected?.();
      void next.lost.then((reason) => {
        if (session !== next || stopping.signal.aborted) return;
        log.warn({ err: reason }, "command notifications: LISTEN connection lost; reconnecting");
        session = undefined;
        void next.release();
        reconnect();
      });
    };
    const reconnect = () => {
      withRetry(connect, {
        initialDelayMs: 250,
        maxDelayMs: 5_000,
        onRetry: (error) => log.warn({ err: error }, "command notifications: cannot LISTEN on Postgres yet"),
        signal: stopping.signal,
      }).catch(() => undefined); // stopped: retries end only then
    };
    await connect();
    return {
      async stop() {
        stopping.abort();
        const current = session;
        session = undefined;
        await current?.release();
      },
    };
  };
}
