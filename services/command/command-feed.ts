import type { Logger } from "../../runtime/logger.js";
import { COMMAND_CHANNEL } from "../../runtime/outbox.js";
import { withRetry } from "../../runtime/retry.js";
import type { DbSession as PgSession, OpenSession } from "../../runtime/db-session.js";

/** What a watcher waits on: a change of its command (NOTIFY), a poll tick, or its abort signal. */
export interface CommandWatch {
  /** Resolves at the next notification for this command, after `pollMs`, or on abort. */
  next(pollMs: number, signal: AbortSignal): Promise<void>;
  close(): void;
}

interface Watcher {
  dirty: boolean;
  wake: (() => void) | undefined;
}

/**
 * One LISTEN connection per process on `umw_command` (payload: the command id), fanned out to every
 * WatchCommand stream of that command. When the connection drops, it reconnects with backoff and
 * wakes every watcher (they re-read); in between, watchers fall back to polling.
 */
export class CommandFeed {
  private readonly watchers = new Map<string, Set<Watcher>>();
  private session: PgSession | undefined;
  private closed = false;
  private running: Promise<void> | undefined;
  private readonly stopping = new AbortController();

  constructor(
    private readonly openSession: OpenSession,
    private readonly log: Logger,
  ) {}

  get connected(): boolean {
    return this.session !== undefined && !this.session.isLost;
  }

  start(): void {
    this.running ??= this.run();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.stopping.abort();
    await this.session?.release();
    await this.running;
    this.wakeAll();
  }

  watch(commandId: string): CommandWatch {
    const id = commandId.toLowerCase();
    const watcher: Watcher = { dirty: false, wake: undefined };
    let set = this.watchers.get(id);
    if (!set) this.watchers.set(id, (set = new Set()));
    set.add(watcher);
    return {
      next: (pollMs, signal) =>
        new Promise<void>((resolve) => {
          if (watcher.dirty || signal.aborted) {
            watcher.dirty = false;
            return resolve();
          }
          const done = () => {
            clearTimeout(timer);
            signal.removeEventListener("abort", done);
            watcher.wake = undefined;
            watcher.dirty = false;
            resolve();
          };
          const timer = setTimeout(done, pollMs);
          signal.addEventListener("abort", done, { once: true });
          watcher.wake = done;
        }),
      close: () => {
        set.delete(watcher);
        if (set.size === 0 && this.watchers.get(id) === set) this.watchers.delete(id);
      },
    };
  }

  private notify(commandId: string): void {
    for (const watcher of this.watchers.get(commandId.toLowerCase()) ?? []) {
      watcher.dirty = true;
      watcher.wake?.();
    }
  }

  private wakeAll(): void {
    for (const set of this.watchers.values()) {
      for (const watcher of set) {
        watcher.dirty = true;
        watcher.wake?.();
      }
    }
  }

  private async run(): Promise<void> {
    while (!this.closed) {
      let session: PgSession;
      try {
        session = await withRetry(() => this.listen(), {
          initialDelayMs: 250,
          maxDelayMs: 5_000,
          onRetry: (error, _attempt, retryMs) => this.log.warn({ err: error, retryMs }, "command feed: cannot LISTEN on Postgres; watchers poll until it can"),
          signal: this.stopping.signal,
        });
      } catch {
        break; // closed while waiting to retry
      }
      if (this.closed) {
        await session.release();
        break;
      }
      this.session = session;
      // Changes may have happened while nobody listened.
      this.wakeAll();
      const reason = await session.lost;
      this.session = undefined;
      if (!this.closed) this.log.warn({ err: reason }, "command feed: LISTEN connection lost; reconnecting");
      await session.release();
    }
  }

  /** A session LISTENing on the command channel (released again when LISTEN fails). */
  private async listen(): Promise<PgSession> {
    let session: PgSession | undefined;
    try {
      session = await this.openSession();
      await session.listen(COMMAND_CHANNEL, (payload) => this.notify(payload));
      return session;
    } catch (error) {
      await session?.release();
      throw error;
    }
  }
}
