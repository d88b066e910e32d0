import pg from "pg";

/** Id of the entity of Zipf rank `rank` (1-based). */
export function entityId(rank: number): string {
  return `e${String(rank).padStart(5, "0")}`;
}

/**
 * Writes `count` entities of one tenant and type through the primary (one statement), then waits
 * until the streaming replica has replayed them and counts them there.
 */
export async function seedEntities(primaryUrl: string, replicaUrl: string, tenant: string, type: string, count: number): Promise<{ rows: number; replicaWaitMs: number }> {
  const primary = new pg.Client({ connectionString: primaryUrl });
  await primary.connect();
  let lsn: string;
  try {
    await primary.query(
      `INSERT INTO umw_entities (tenant, type, id, version, data)
       SELECT $1, $2, 'e' || lpad(n::text, 5, '0'), 1 + n % 7,
              jsonb_build_object('name', 'item ' || n, 'price', round((n % 1000) * 1.25, 2), 'stock', n % 50,
                                 'tags', jsonb_build_array('bench', 'zipf'), 'description', repeat('x', 64))
       FROM generate_series(1, $3::int) AS n
       ON CONFLICT (tenant, type, id) DO NOTHING`,
      [tenant, type, count],
    );
    lsn = (await primary.query<{ lsn: string }>("SELECT pg_current_wal_lsn()::text AS lsn")).rows[0]!.lsn;
  } finally {
    await primary.end();
  }
  const started = performance.now();
  const replica = new pg.Client({ connectionString: replicaUrl });
  await replica.connect();
  try {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const { rows } = await replica.query<{ ok: boolean }>("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok", [lsn]);
      if (rows[0]?.ok) break;
      if (Date.now() > deadline) throw new Error(`the replica did not replay up to ${lsn} within 30 s`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const replicaWaitMs = Math.round(performance.now() - started);
    const { rows } = await replica.query<{ n: number }>("SELECT count(*)::int AS n FROM umw_entities WHERE tenant = $1 AND type = $2", [tenant, type]);
    return { rows: rows[0]!.n, replicaWaitMs };
  } finally {
    await replica.end();
  }
}
