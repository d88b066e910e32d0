import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";

/** A condition is not met yet while it answers undefined, null or false; any other value is the result. */
export type Condition<T> = () => T | undefined | null | false | Promise<T | undefined | null | false>;

export interface WaitOptions {
  /** What is awaited, for the failure message ("the cache entry at v2"). */
  readonly what: string;
  /** Deadline from the first check (default 15 s). */
  readonly timeoutMs?: number;
  /** Pause between checks (default 20 ms). */
  readonly everyMs?: number;
  /** Treat an exception from the condition as "not yet" (a service still starting refuses connections), reporting the last one on timeout. */
  readonly tolerateErrors?: boolean;
  /** More to say on timeout, read then (e.g. a child process's output so far). */
  readonly detail?: () => string;
}

/**
 * The one poll helper of the tests: checks `condition` until it is met and resolves with its value,
 * or fails with "timed out after N ms waiting for <what> (last seen: …)" once the deadline passes.
 * An exception from the condition ends the wait at once (a definite failure, not "not yet"), unless
 * `tolerateErrors` says that it only means "not yet".
 */
export async function waitFor<T>(condition: Condition<T>, options: WaitOptions): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 15_000;
  const everyMs = options.everyMs ?? 20;
  const started = Date.now();
  let lastError: unknown;
  for (let checks = 1; ; checks++) {
    let value: Awaited<ReturnType<Condition<T>>> = undefined;
    try {
      value = await condition();
    } catch (error) {
      if (!options.tolerateErrors) throw error;
      lastError = error;
    }
    if (value !== undefined && value !== null && value !== false) return value;
    const elapsed = Date.now() - started;
    if (elapsed > timeoutMs) {
      const lastErrorText = lastError === undefined ? "" : `, last error: ${(lastError as Error).message ?? String(lastError)}`;
      const detail = options.detail ? `\n${options.detail()}` : "";
      assert.fail(`timed out after ${timeoutMs} ms waiting for ${options.what} (${checks} checks, last seen: ${String(value)}${lastErrorText})${detail}`);
    }
    await sleep(Math.max(0, Math.min(everyMs, timeoutMs - elapsed + 1)));
  }
}
