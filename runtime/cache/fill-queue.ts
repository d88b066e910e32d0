import type { FillMessage } from "./cache.js";

/** Waits for one queued message, the timeout, or the signal; shared by both adapters. */
export async function nextMessage(
  queue: FillMessage[],
  setWake: (wake: (() => void) | undefined) => void,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<FillMessage | undefined> {
  if (queue.length === 0 && timeoutMs > 0 && !signal?.aborted) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      signal?.addEventListener("abort", done, { once: true });
      setWake(done);
      function done() {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        setWake(undefined);
        resolve();
      }
    });
  }
  return queue.shift();
}
