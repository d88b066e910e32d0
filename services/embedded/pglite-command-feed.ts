import type { PGlite } from "@electric-sql/pglite";
import type { Logger } from "../../runtime/logger.js";
import { COMMAND_CHANNEL } from "../../runtime/outbox.js";
import type { Sql } from "../../runtime/sql.js";
import { notifiedCommandFeed, type CommandFeed } from "../realtime/command-feed.js";

export interface PgliteCommandFeedOptions {
  readonly pglite: PGlite;
  /** Where the rows are read (the same PGlite, as a Database). */
  readonly sql: Sql;
  readonly log: Logger;
}

/**
 * The realtime hub's CommandFeed on PGlite: the same feed as on a Postgres server, with PGlite's
 * `listen()` as the notification source. PGlite lives in this process, so there is no connection
 * to lose and nothing to reconnect.
 */
export function pgliteCommandFeed(options: PgliteCommandFeedOptions): CommandFeed {
  const { pglite } = options;
  return notifiedCommandFeed({
    sql: options.sql,
    log: options.log,
    async notifications(onId) {
      const unlisten = await pglite.listen(COMMAND_CHANNEL, (id) => {
        if (id) onId(id);
      });
      return {
        async stop() {
          if (!pglite.closed) await unlisten().catch(() => undefined);
        },
      };
    },
  });
}
