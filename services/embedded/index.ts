import type { PGlite } from "@electric-sql/pglite";
import { createDevCertificates } from "../../runtime/certs.js";
import type { Config } from "../../runtime/config.js";
import type { Infrastructure } from "../../runtime/infrastructure.js";
import type { Logger } from "../../runtime/logger.js";
import { MemoryBus } from "../../runtime/memory-bus.js";
import { tracedBus } from "../../runtime/message-tracing.js";
import type { Database } from "../../runtime/sql.js";
import { topicNames } from "../../runtime/topics.js";
import { MemoryCache } from "../../runtime/cache/memory-cache.js";
import { umwTopics } from "../relay/index.js";
import { MESH_IDENTITIES } from "../registry.js";
import { openEmbeddedDatabase } from "./pglite-template.js";

export { openEmbeddedDatabase } from "./pglite-template.js";

/** The embedded infrastructure, with its stand-ins reachable (tests look inside them). */
export interface EmbeddedInfrastructure extends Infrastructure {
  /** Postgres primary and read replica both (PGlite: one connection, transactions queue). */
  readonly db: Database & { readonly pglite: PGlite };
  /** Kafka. */
  readonly memoryBus: MemoryBus;
  /** Redis. */
  readonly memoryCache: MemoryCache;
  /** PGlite's folder; undefined = in memory. */
  readonly dataDir: string | undefined;
}

/**
 * `umw serve ... --embedded` (or UMW_EMBEDDED=1): the infrastructure on PGlite, the in-process bus
 * and the in-memory cache instead of Postgres, Kafka and Redis; the services wire themselves on it
 * as on the real one (same gRPC servers over mTLS on the configured ports, same edge). Opened at
 * once (one PGlite is the primary and the replica), and creates the dev certificates that are
 * missing, so a first run needs no `umw certs`.
 */
export async function openEmbedded(config: Config, log: Logger): Promise<EmbeddedInfrastructure> {
  const created = createDevCertificates({ dir: config.certsDir, identities: MESH_IDENTITIES });
  if (created.length) log.info({ dir: config.certsDir, created }, "embedded: created dev certificates");

  const dataDir = config.embeddedDataDir;
  const db = await openEmbeddedDatabase({ dataDir, log });
  const bus = new MemoryBus();
  const cache = new MemoryCache();
  try {
    await bus.ensureTopics(umwTopics(config, config.topicPartitions));
    if (dataDir) await requeueAcceptedCommands(db, topicNames(config).commands, log);
  } catch (error) {
    await db.close().catch(() => undefined);
    throw error;
  }
  log.warn(
    { postgres: dataDir ? `PGlite in ${dataDir}` : "PGlite in memory", kafka: "in-process bus (memory)", redis: "in-process cache (memory)" },
    dataDir
      ? `embedded mode: no Redis, Postgres or Kafka; the database is kept in ${dataDir}, the bus and the cache are in memory (lost at exit)`
      : "embedded mode: no Redis, Postgres or Kafka; all data is in memory and not durable (lost at exit; UMW_EMBEDDED_DATA_DIR keeps the database)",
  );

  return {
    kind: "embedded",
    db,
    memoryBus: bus,
    memoryCache: cache,
    dataDir,
    primary: async () => db,
    replica: () => db,
    bus: async () => tracedBus(bus, log),
    cache: async () => cache,
    labels: { primary: "PGlite (embedded)", bus: "the in-process bus" },
    async close() {
      await bus.close();
      await cache.close();
      await db.close();
    },
  };
}

/**
 * With a data dir, the database outlives the process but the in-process bus does not: a command
 * the relay had handed to the old bus and no processor had applied yet would stay ACCEPTED for
 * ever. Mark its outbox row unpublished so the relay sends it again (the processor's inbox dedups
 * anything that had in fact been applied). Rows already pruned (UMW_OUTBOX_RETENTION_MS) are gone.
 */
async function requeueAcceptedCommands(db: Database, commandsTopic: string, log: Logger): Promise<void> {
  const { rows } = await db.query<{ id: string }>(
    `UPDATE umw_outbox SET published_at = NULL
      WHERE published_at IS NOT NULL AND topic = $1
        AND id IN (SELECT id FROM umw_commands WHERE state = 'accepted')
      RETURNING id::text AS id`,
    [commandsTopic],
  );
  if (rows.length) log.info({ count: rows.length }, "embedded: re-sending commands accepted before the last stop and not yet applied");
}
