import { join } from "node:path";
import pg from "pg";
import { freePort } from "./ports.js";
import { postgresFolder, serverSettings, type PrivatePostgres } from "./private-postgres.js";
import { waitFor } from "./wait.js";

/**
 * A streaming replica of a private primary (startPrivatePostgres), made as scripts/infra.sh makes
 * the shared replica: `pg_basebackup -R` from the primary (with a fast checkpoint: a spread one takes minutes), then started as a hot standby on a free
 * port of its own. For tests that kill the read replica (the shared one on :15433 is never touched).
 */
export async function startPrivateReplica(primary: PrivatePostgres): Promise<PrivatePostgres> {
  const server = await postgresFolder("umw-pg-replica-");
  await server.pgRun("pg_basebackup", ["-h", "127.0.0.1", "-p", String(primary.port), "-U", "umw", "-D", server.data, "-R", "-X", "stream", "--checkpoint=fast", "--no-sync"]);
  const port = await freePort();
  // The copied settings are the primary's: its port and socket folder are overridden (last wins).
  server.writeConfig(join(server.data, "postgresql.auto.conf"), serverSettings(port, server.dir), true);
  await server.pgCtl("start");
  const url = `postgres://umw@127.0.0.1:${port}/umw`;
  const replica = server.control(url, port);
  await waitFor(
    async () => {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        return (await client.query<{ standby: boolean }>("SELECT pg_is_in_recovery() AS standby")).rows[0]!.standby;
      } finally {
        await client.end();
      }
    },
    { what: "the private replica to answer as a standby", timeoutMs: 30_000, everyMs: 50, tolerateErrors: true },
  ).catch(async (error: unknown) => {
    await replica.destroy();
    throw error;
  });
  return replica;
}
