import type { Logger } from "../../runtime/logger.js";
import { commandNotifications } from "../../runtime/command-notifications.js";
import { withRetry } from "../../runtime/retry.js";
import type { OpenSession } from "../../runtime/db-session.js";

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
 * Command notifications (runtime/command-notifications.ts, the one LISTEN loop) fanned out to every
 * WatchCommand stream of that command. Each time the LISTEN session is (re)connected every watcher
 * is woken (they re-read: changes may have been missed); while it is down, watchers poll.
 */
export class CommandFeed {
  private readonly watchers = new Map<string, Set<Watcher>>();
  private subscription: { stop(): Promise<void> } | undefined;
  private closed = false;
  private running: Promise<void> | undefined;
  private readonly stopping = new AbortController();

  constructor(
    private readonly openSession: OpenSession,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.running ??= this.run();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.stopping.abort();
    await this.running;
    await this.subscription?.stop();
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
    const notifications = commandNotifications(this.openSession, this.log);
    try {
      // Later losses are reconnected inside; the first connection is retried here while watchers poll.
      this.subscription = await withRetry(() => notifications((id) => this.notify(id), { onConnected: () => this.wakeAll() }), {
        initialDelayMs: 250,
        maxDelayMs: 5_000,
        onRetry: (error, _attempt, retryMs) => this.log.warn({ err: error, retryMs }, "command feed: cannot LISTEN on Postgres; watchers poll until it can"),
        signal: this.stopping.signal,
      });
    } catch {
      return; // closed while waiting to retry
    }
    if (this.closed) await this.subscription.stop();
  }
}
