import type { Logger } from "../../runtime/logger.js";
import { COMMAND_CHANNEL, OUTBOX_CHANNEL } from "../../runtime/outbox.js";
import type { Sql } from "../../runtime/sql.js";

const NOTIFY_SQL = `SELECT pg_notify('${OUTBOX_CHANNEL}', '') WHERE $1::boolean
UNION ALL SELECT pg_notify('${COMMAND_CHANNEL}', id) FROM unnest($2::text[]) AS id`;

/**
 * The processor's notifications, sent after its transactions commit rather than inside them: a
 * NOTIFY in a transaction takes a cluster-wide lock from pre-commit to the end of the commit (the
 * WAL flush included), so every notifying transaction commits alone, and the processor's
 * partitions (and every other notifying client of the server) wait for each other's fsyncs; here
 * that capped the processor near 1/fsync messages per second. After commit, one statement at a time
 * carries every pending notification: the relay's wake-up (`umw_outbox`, when a domain event was
 * written) and the id of each command whose state changed (`umw_command`, for WatchCommand and the
 * realtime hub). A NOTIFY-only transaction writes no WAL, so it does not wait for a flush either.
 * A crash between commit and notification loses only the wake-ups: the relay's polling and the
 * watchers' polling pick the changes up.
 */
export class CommitNotifier {
  private inFlight = false;
  private outbox = false;
  private commands: string[] = [];

  constructor(
    private readonly sql: Sql,
    private readonly log: Logger,
  ) {}

  /** After a commit: wake the relay (a domain event is in the outbox) and/or announce a command's new state. */
  committed(change: { readonly outbox: boolean; readonly commandIds: readonly string[] }): void {
    if (change.outbox) this.outbox = true;
    this.commands.push(...change.commandIds);
    this.flush();
  }

  private flush(): void {
    if (this.inFlight || (!this.outbox && this.commands.length === 0)) return;
    const outbox = this.outbox;
    const commands = this.commands;
    this.outbox = false;
    this.commands = [];
    this.inFlight = true;
    this.sql.query(NOTIFY_SQL, [outbox, commands]).then(
      () => this.done(),
      (error: unknown) => {
        this.log.debug({ err: error, commands: commands.length }, "notification after commit failed; pollers pick the changes up");
        this.done();
      },
    );
  }

  private done(): void {
    this.inFlight = false;
    this.flush();
  }
}
