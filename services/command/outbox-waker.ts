import type { Logger } from "../../runtime/logger.js";
import { OUTBOX_CHANNEL } from "../../runtime/outbox.js";
import type { Sql } from "../../runtime/sql.js";

/**
 * Wakes the relay after commits. Not with a NOTIFY inside the accepting transaction (what
 * runtime/outbox.ts's appendToOutbox does): Postgres serializes the commits of all notifying
 * transactions (a database-wide lock from pre-commit to the end of commit, WAL flush included),
 * which more than halved accepted writes per second here. Instead: at most one
 * `pg_notify('umw_outbox')` in flight, and one more after it when commits happened meanwhile, so a
 * burst of writes costs a couple of NOTIFYs and no commit waits for another. A lost wake-up (crash
 * after commit) costs only the relay's poll interval.
 */
export class OutboxWaker {
  private inFlight = false;
  private again = false;

  constructor(
    private readonly sql: Sql,
    private readonly log: Logger,
  ) {}

  wake(): void {
    if (this.inFlight) {
      this.again = true;
      return;
    }
    this.inFlight = true;
    this.sql.query(`SELECT pg_notify('${OUTBOX_CHANNEL}', '')`).then(
      () => this.done(),
      (error: unknown) => {
        this.log.debug({ err: error }, "outbox wake-up failed; the relay's polling will pick the rows up");
        this.done();
      },
    );
  }

  private done(): void {
    this.inFlight = false;
    if (this.again) {
      this.again = false;
      this.wake();
    }
  }
}
