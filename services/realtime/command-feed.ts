import type { CommandStatus } from "../../gen/umw/v1/command_pb.js";
import { COMMAND_COLUMNS, commandStatusFromRow, type CommandRow } from "../../runtime/command-status.js";
import type { Logger } from "../../runtime/logger.js";
import { commandNotifications, type CommandNotifications } from "../../runtime/command-notifications.js";
import type { OpenSession } from "../../runtime/db-session.js";
import type { Sql } from "../../runtime/sql.js";

/** A command's status, with who issued it (the index key of own-command subscriptions). */
export interface CommandUpdate {
  readonly principal: string;
  readonly status: CommandStatus;
}

export interface CommandFeedSubscription {
  stop(): Promise<void>;
}

/**
 * Command status changes, as every hub instance sees them. Not part of the Kafka positions: a
 * resume re-reads recent statuses instead of replaying them.
 */
export interface CommandFeed {
  /** `interested` lets the feed skip work while no stream follows commands. */
  start(listener: (update: CommandUpdate) => void, interested: () => boolean): Promise<CommandFeedSubscription>;
  /** Statuses of one principal's commands updated since `sinceMs`, oldest first. */
  recent(tenant: string, principal: string, sinceMs: number, limit: number): Promise<CommandStatus[]>;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface PostgresCommandFeedOptions {
  /** LISTEN needs a session of its own (Database.openSession of the primary). */
  readonly openSession: OpenSession;
  /** The same database, for the row reads. */
  readonly sql: Sql;
  readonly log: Logger;
}


/**
 * The processor (and the command service) update `umw_commands` and NOTIFY `umw_command` with the
 * command id; this feed reads the row and passes each new state on once, in notification order.
 */
export function notifiedCommandFeed(options: { readonly sql: Sql; readonly log: Logger; readonly notifications: CommandNotifications }): CommandFeed {
  const { sql, log } = options;
  return {
    async recent(tenant, principal, sinceMs, limit) {
      const { rows } = await sql.query<CommandRow>(
        `SELECT ${COMMAND_COLUMNS} FROM umw_commands
          WHERE tenant = $1 AND principal = $2 AND update_time >= $3
          ORDER BY update_time DESC LIMIT $4`,
        [tenant, principal, new Date(sinceMs), limit],
      );
      return rows.reverse().map(commandStatusFromRow);
    },

    async start(listener, interested) {
      let stopped = false;
      // Reads run one at a time, in notification order, so states reach streams in order.
      let chain = Promise.resolve();
      const lastSent = new Map<string, string>();

      const read = async (id: string) => {
        if (stopped) return;
        const { rows } = await sql.query<CommandRow>(`SELECT ${COMMAND_COLUMNS} FROM umw_commands WHERE id = $1`, [id]);
        const row = rows[0];
        if (!row) return;
        const stamp = `${row.state}:${row.version ?? ""}`;
        if (lastSent.get(row.id) === stamp) return;
        lastSent.delete(row.id);
        lastSent.set(row.id, stamp);
        if (lastSent.size > 10_000) lastSent.delete(lastSent.keys().next().value!);
        listener({ principal: row.principal, status: commandStatusFromRow(row) });
      };

      const subscription = await options.notifications((id) => {
        if (stopped || !UUID.test(id) || !interested()) return;
        chain = chain.then(() => read(id)).catch((error: unknown) => log.warn({ err: error, commandId: id }, "cannot read command status"));
      });
      return {
        async stop() {
          stopped = true;
          await subscription.stop();
          await chain;
        },
      };
    },
  };
}

/** The feed on the primary: notifications from runtime/command-notifications.ts (one LISTEN loop). Notifications sent while it is down are missed. */
export function postgresCommandFeed(options: PostgresCommandFeedOptions): CommandFeed {
  return notifiedCommandFeed({ sql: options.sql, log: options.log, notifications: commandNotifications(options.openSession, options.log) });
}
