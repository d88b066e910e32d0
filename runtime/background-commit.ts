/**
 * Commits a consumer's handled offsets beside the work instead of in front of it.
 *
 * kafkajs with `autoCommit` awaits an OffsetCommit round trip to the group coordinator at the end
 * of every partition batch, and its fetch loop waits for every batch of a fetch before it fetches
 * again: each hop of the write path paid that round trip (and, on a busy host, the wake-ups around
 * it) before the next messages were even asked for. Here a batch asks for a commit and returns; at
 * most one commit is in flight, and the handlers that finish meanwhile are covered by one more
 * commit right after it (`commit` always sends everything resolved so far, never a handler that
 * has not finished: at-least-once is kept). A failed commit (a rebalance, a broker restart) is
 * only logged: the next one carries the same offsets, and what was never committed is delivered
 * again, which the consumers' dedup already absorbs.
 */
export class BackgroundCommit {
  private commit: (() => Promise<void>) | undefined;
  private inFlight: Promise<void> | undefined;
  private again = false;

  constructor(private readonly onError: (error: unknown) => void) {}

  /** A handler finished and its offset is resolved: `commit` sends every resolved offset. */
  request(commit: () => Promise<void>): void {
    this.commit = commit;
    if (this.inFlight) {
      this.again = true;
      return;
    }
    this.inFlight = this.run();
  }

  /** Resolves once everything requested so far has been committed (or failed to). */
  async flush(): Promise<void> {
    await this.inFlight;
  }

  private async run(): Promise<void> {
    try {
      do {
        this.again = false;
        try {
          await this.commit!();
        } catch (error) {
          this.onError(error);
        }
      } while (this.again);
    } finally {
      this.inFlight = undefined;
    }
  }
}
