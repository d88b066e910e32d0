import pg from "pg";
import { migrate } from "../../runtime/migrate.js";
import { infra, runId } from "./env.js";

export interface TestDatabase {
  readonly name: string;
  /** The primary, connected to this run's database. */
  readonly url: string;
  /** The streaming replica's copy of the same database. */
  readonly replicaUrl: string;
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
  if (options.replica) await waitForReplica(replicaUrl);
  return {
    name,
    url,
    replicaUrl,
    async drop() {
      const client = new pg.Client({ connectionString: infra.pgUrl });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await client.end();
    },
  };
}

/** Waits until the replica has replayed the migrations of this run's database. */
async function waitForReplica(replicaUrl: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const client = new pg.Client({ connectionString: replicaUrl });
    try {
      await client.connect();
      const { rows } = await client.query("SELECT count(*)::int AS n FROM umw_schema_migrations");
      if (rows[0].n > 0) return;
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`replica never caught up with ${replicaUrl}: ${(error as Error).message}`);
    } finally {
      await client.end().catch(() => undefined);
    }
    if (Date.now() > deadline) throw new Error(`replica never caught up with ${replicaUrl}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
