import type { PGlite } from "@electric-sql/pglite";
import { COMMAND_COLUMNS, commandStatusFromRow, type CommandRow } from "../../runtime/command-status.js";
import type { Logger } from "../../runtime/logger.js";
import { COMMAND_CHANNEL } from "../../runtime/outbox.js";
import type { Sql } from "../../runtime/sql.js";
import type { CommandFeed } from "../realtime/command-feed.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface PgliteCommandFeedOptions {
  readonly pglite: PGlite;
  /** Where the rows are read (the same PGlite, as a Database). */
  readonly sql: Sql;
  readonly log: Logger;
}

/**
 * The realtime hub's CommandFeed on PGlite: the same contract as postgresCommandFeed (NOTIFY
 * `umw_command` with the command id, read the row, pass each new state on once, in notification
 * order), with PGlite's `listen()` instead of a LISTEN connection of its own. PGlite lives in this
 * process, so there is no connection to lose and nothing to reconnect.
 */
export function pgliteCommandFeed(options: PgliteCommandFeedOptions): CommandFeed {
  const { pglite, sql, log } = options;
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
      // Reads run one at a time, in notification order, so states reach streams in order.
      let chain = Promise.resolve();
      let stopped = false;
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

      const unlisten = await pglite.listen(COMMAND_CHANNEL, (id) => {
        if (stopped || !id || !UUID.test(id) || !interested()) return;
        chain = chain.then(() => read(id)).catch((error: unknown) => log.warn({ err: error, commandId: id }, "cannot read command status"));
      });
      return {
        async stop() {
          stopped = true;
          if (!pglite.closed) await unlisten().catch(() => undefined);
          await chain;
        },
      };
    },
  };
}
