// Shared setup of the query tests: a fresh database per test file (created on the primary,
// streamed to the replica, migrated), a random Redis key prefix, mTLS certificates, and
// wrappers that count backend calls.
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import pg from "pg";
import { pino } from "pino";
import type { Entity } from "../../gen/umw/v1/entity_pb.js";
import { createTestDatabase as createIsolatedDatabase } from "../support/database.js";
import { testCerts } from "../support/certs.js";
import { infra } from "../support/env.js";
import { clientCredentials, serverCredentials } from "../../runtime/tls.js";
import type { Cache } from "../../runtime/cache/cache.js";
import type { CacheKey } from "../../runtime/cache/keys.js";
import type { EntityBackend } from "../../services/query/backend.js";
import { waitFor } from "../support/wait.js";

export const REDIS_URL = infra.redisUrl;

export const log = pino({ level: process.env.TEST_LOG ?? "silent" });

export const unique = (prefix: string): string => `${prefix}_${Date.now().toString(36)}_${randomBytes(4).toString("hex")}`;

export interface TestDatabase {
  readonly name: string;
  readonly primaryUrl: string;
  readonly replicaUrl: string;
  /** A pool on the primary, for writing test rows. */
  readonly primary: pg.Pool;
  /** A pool on the replica, for inspection (pg_stat_statements). */
  readonly replica: pg.Pool;
  /** Waits until the replica has replayed everything the primary has written so far. */
  syncReplica(): Promise<void>;
  insert(tenant: string, type: string, id: string, version: number, data?: Record<string, unknown>): Promise<void>;
  drop(): Promise<void>;
}

/** A fresh database `umw_t_<random>` on the primary, migrated, visible on the replica, with pools on both. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const database = await createIsolatedDatabase();
  const primary = new pg.Pool({ connectionString: database.url, max: 4 });
  await primary.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
  await database.syncReplica();
  const replica = new pg.Pool({ connectionString: database.replicaUrl, max: 2 });
  return {
    name: database.name,
    primaryUrl: database.url,
    replicaUrl: database.replicaUrl,
    primary,
    replica,
    syncReplica: database.syncReplica,
    async insert(tenant, type, id, version, data = { id }) {
      await primary.query(
        `INSERT INTO umw_entities (tenant, type, id, version, data) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (tenant, type, id) DO UPDATE SET version = EXCLUDED.version, data = EXCLUDED.data, update_time = now()`,
        [tenant, type, id, version, JSON.stringify(data)],
      );
    },
    async drop() {
      await replica.end().catch(() => undefined);
      await primary.end().catch(() => undefined);
      await database.drop();
    },
  };
}

/** Deletes every Redis key under `prefix`. */
export async function deleteKeys(prefix: string): Promise<void> {
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  try {
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
      cursor = next;
      if (keys.length) await redis.del(...keys);
    } while (cursor !== "0");
  } finally {
    redis.disconnect();
  }
}

/** Dev CA + certificates for the query server and a client, in a temp dir. */
export function testCertificates() {
  const certs = testCerts(["query", "cli"]);
  return {
    dir: certs.dir,
    server: serverCredentials(certs.identity("query")),
    client: () => clientCredentials(certs.identity("cli")),
    remove: certs.remove,
  };
}

/** A TCP port nothing listens on (one that was free a moment ago). */
export { freePort as closedPort } from "../support/ports.js";

/** Wraps a backend: counts calls, and can delay or fail them. */
export class CountingBackend implements EntityBackend {
  gets = 0;
  /** Gets whose inner read has answered (the state they return is fixed from then on). */
  reads = 0;
  batchGets = 0;
  batchIds = 0;
  lists = 0;
  delayMs = 0;
  /** Delay after the inner read: a load that read an old state and returns late. */
  delayAfterMs = 0;
  failWith: Error | undefined;
  /** When set, loads wait for it before reading (hold a load open until callers have piled up). */
  gate: Promise<void> | undefined;
  /** Replaces the answer of get (e.g. a lagging replica). */
  override: ((entity: Entity | undefined) => Entity | undefined) | undefined;

  constructor(readonly inner: EntityBackend) {}

  get kind(): string {
    return this.inner.kind;
  }

  async get(tenant: string, type: string, id: string, signal: AbortSignal): Promise<Entity | undefined> {
    this.gets++;
    if (this.gate) await this.gate;
    if (this.delayMs) await sleep(this.delayMs);
    if (this.failWith) throw this.failWith;
    const entity = await this.inner.get(tenant, type, id, signal);
    this.reads++;
    if (this.delayAfterMs) await sleep(this.delayAfterMs);
    return this.override ? this.override(entity) : entity;
  }

  async batchGet(tenant: string, type: string, ids: readonly string[], signal: AbortSignal): Promise<Map<string, Entity>> {
    this.batchGets++;
    this.batchIds += ids.length;
    if (this.delayMs) await sleep(this.delayMs);
    if (this.failWith) throw this.failWith;
    return this.inner.batchGet(tenant, type, ids, signal);
  }

  get list() {
    const inner = this.inner.list?.bind(this.inner);
    if (!inner) return undefined;
    return async (tenant: string, type: string, after: string | undefined, limit: number, signal: AbortSignal) => {
      this.lists++;
      return inner(tenant, type, after, limit, signal);
    };
  }
}

/** Waits until the cached entry of `key` is past its fresh lifetime (or gone): the next read misses. */
export async function untilStale(cache: Cache, key: CacheKey, timeoutMs = 5_000): Promise<void> {
  await waitFor(async () => {
    const entry = await cache.get(key);
    return !entry || Date.now() >= entry.freshUntil;
  }, { what: `the cached ${key.local} to go stale`, timeoutMs });
}

/** Waits until the cache no longer holds `key` at all (its PX, the end of any grace, has passed). */
export async function untilGone(cache: Cache, key: CacheKey, timeoutMs = 5_000): Promise<void> {
  await waitFor(async () => (await cache.get(key)) === undefined, { what: `the cached ${key.local} to expire`, timeoutMs });
}
