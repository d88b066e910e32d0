import pg from "pg";
import { migrate } from "../../runtime/migrate.js";
import { infra, runId } from "./env.js";

export interface TestDatabase {
  readonly name: string;
  /** The primary, connected to this run's database. */
  readonly url: string;
  /** The streaming replica's copy of the same database. */
  readonly replicaUrl: string;
  /** Waits until the replica has replayed everything the primary has written so far. */
  syncReplica(): Promise<void>;
  drop(): Promise<void>;
}

function withDatabase(url: string, name: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${name}`;
  return parsed.toString();
}

/**
 * A database of its own for one test run, migrated, on the primary; it replicates to the replica,
 * which is waited for when `replica` is set.
 */
export async function createTestDatabase(options: { replica?: boolean } = {}): Promise<TestDatabase> {
  const name = `umw_t_${runId()}`;
  const admin = new pg.Client({ connectionString: infra.pgUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = withDatabase(infra.pgUrl, name);
  const replicaUrl = withDatabase(infra.pgReplicaUrl, name);
  await migrate(url);
  const syncReplica = () => waitForReplay(url);
  if (options.replica) await syncReplica();
  return {
    name,
    url,
    replicaUrl,
    syncReplica,
    async drop() {
      const client = new pg.Client({ connectionString: infra.pgUrl });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await client.end();
    },
  };
}

/** Waits until the replica has replayed the primary's WAL up to where it is now. */
async function waitForReplay(primaryUrl: string, timeoutMs = 15_000): Promise<void> {
  const primary = new pg.Client({ connectionString: primaryUrl });
  await primary.connect();
  const { rows } = await primary.query<{ lsn: string }>("SELECT pg_current_wal_lsn()::text AS lsn").finally(() => primary.end());
  const lsn = rows[0]!.lsn;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const replica = new pg.Client({ connectionString: infra.pgReplicaUrl });
    try {
      await replica.connect();
      const { rows: replayed } = await replica.query<{ ok: boolean }>("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok", [lsn]);
      if (replayed[0]?.ok) return;
    } finally {
      await replica.end().catch(() => undefined);
    }
    if (Date.now() > deadline) throw new Error(`the replica did not replay up to ${lsn} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
