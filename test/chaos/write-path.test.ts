// Chaos on the write path, against the real Postgres primary, Redis and Kafka: under a steady
// stream of commands (creates, updates, patches, deletes and re-creates over a few hundred
// entities, each command with its own idempotency key), the relay, then the processor, then the
// cache updater are killed with SIGKILL and restarted. Afterwards every accepted command must have
// been applied exactly once, and the cache must match the database.
//
// Every service runs as a `umw serve <name>` child process, as deployed: CommandService (not a
// target: the load goes through it), and the relay, the processor and the cache updater, which are
// killed -9 and restarted.
//
//   scripts/infra.sh up && node --import tsx --test test/chaos/write-path.test.ts
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { waitFor } from "../support/wait.js";
import { fromBinary, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { CommandService } from "../../gen/umw/v1/command_pb.js";
import { ChangeKind, DomainEventSchema } from "../../gen/umw/v1/envelope_pb.js";
import { createClient, type MeshClient } from "../../runtime/client.js";
import { rootLogger } from "../../runtime/logger.js";
import { connectPostgres, type Database } from "../../runtime/sql.js";
import { clientCredentials } from "../../runtime/tls.js";
import { topicNames } from "../../runtime/topics.js";
import { canonicalJson } from "../../services/command/idempotency.js";
import { decodeEntry } from "../../runtime/cache/entry.js";
import { cacheKey } from "../../runtime/cache/keys.js";
import { RedisCache } from "../../runtime/cache/redis-cache.js";
import { MESH_IDENTITIES } from "../../services/registry.js";
import { testCerts, type TestCerts } from "../support/certs.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { infra, runId } from "../support/env.js";
import { freePort } from "../support/ports.js";
import { ServeProcess } from "../support/serve-process.js";
import { dropKafkaPrefix } from "../processor/support.js";

const log = rootLogger("silent");
const TENANT = "chaos";
const TYPE = "item";
const ENTITIES = 300;
const RATE_PER_S = 80;
const LOAD_MS = 50_000;
/** When each worker is killed (ms after the load starts) and how long it stays down. */
const KILLS = [
  { service: "relay", atMs: 8_000, downMs: 2_000 },
  { service: "processor", atMs: 20_000, downMs: 2_000 },
  { service: "cache-updater", atMs: 33_000, downMs: 2_000 },
] as const;
const DRAIN_TIMEOUT_MS = 60_000;
/** Share of accepted commands sent a second time with the same key (must replay, not re-apply). */
const REPLAY_SHARE = 0.05;

const RESOURCES = {
  [TYPE]: {
    schema: {
      type: "object",
      required: ["n"],
      additionalProperties: false,
      properties: { n: { type: "integer" }, label: { type: "string" }, extra: { type: "string" } },
    },
  },
};

type Worker = "command" | "relay" | "processor" | "cache-updater";
type Op = "create" | "update" | "patch" | "delete";

/** What the test believes about one entity: every command it sends is expected to apply, in order. */
interface Model {
  readonly id: string;
  exists: boolean;
  /** The version the last accepted command will produce (0: never written). */
  version: number;
  data: JsonObject | undefined;
  /** A command for it is being accepted: the next one waits (one entity's commands stay ordered). */
  busy: boolean;
  changes: number;
}

interface Sent {
  readonly commandId: string;
  readonly entityId: string;
  readonly op: Op;
  /** The version the command must produce. */
  readonly version: number;
}

/** RFC 7396 on one level (the patches here only set or remove top-level fields). */
function mergePatch(target: JsonObject, patch: JsonObject): JsonObject {
  const out: JsonObject = { ...target };
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key];
    else out[key] = value;
  }
  return out;
}

function countBy<T>(items: readonly T[], key: (item: T) => string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1);
  return counts;
}

describe("chaos: kill -9 the relay, the processor and the cache updater under load", { timeout: 240_000 }, () => {
  const prefix = `t${runId()}.`;
  const topics = topicNames({ topicPrefix: prefix });
  let database: TestDatabase;
  let db: Database;
  let certs: TestCerts;
  let client: MeshClient<typeof CommandService>;
  let cache: RedisCache;
  const workers = new Map<Worker, ServeProcess>();
  const retired: ServeProcess[] = [];
  let env: NodeJS.ProcessEnv;

  const startWorker = async (name: Worker) => {
    const portVariable: Record<Worker, string> = { command: "UMW_COMMAND_PORT", relay: "UMW_RELAY_PORT", processor: "UMW_PROCESSOR_PORT", "cache-updater": "UMW_CACHE_UPDATER_PORT" };
    for (let attempt = 1; ; attempt++) {
      // A port free a moment ago may be taken meanwhile by another run on this machine: try another.
      const port = await freePort();
      try {
        // The processor logs its inbox's duplicate skips at debug: evidence that redelivery happened.
        const proc = await ServeProcess.start([name], { ...env, [portVariable[name]]: String(port), UMW_LOG_LEVEL: name === "processor" ? "debug" : "info" }, 45_000);
        workers.set(name, proc);
        if (name === "command") {
          client?.close();
          client = createClient(CommandService, `127.0.0.1:${port}`, clientCredentials(certs.identity("cli")));
        }
        return proc;
      } catch (error) {
        if (attempt >= 3 || !/cannot listen|EADDRINUSE/.test(String((error as Error).message))) throw error;
      }
    }
  };

  before(async () => {
    database = await createTestDatabase();
    certs = testCerts(MESH_IDENTITIES);
    db = await connectPostgres({ url: database.url, role: "primary", log, max: 4 });
    cache = await RedisCache.connect({ url: infra.redisUrl, log });
    env = {
      UMW_PG_URL: database.url,
      UMW_PG_REPLICA_URL: database.replicaUrl,
      UMW_REDIS_URL: infra.redisUrl,
      UMW_KAFKA_BROKERS: infra.kafkaBrokers.join(","),
      UMW_TOPIC_PREFIX: prefix,
      UMW_CACHE_KEY_PREFIX: prefix,
      UMW_TOPIC_PARTITIONS: "4",
      UMW_CERTS_DIR: certs.dir,
      UMW_CONFIG: "",
      UMW_RESOURCES: JSON.stringify(RESOURCES),
      UMW_RELAY_POLL_MS: "200",
      UMW_RELAY_LOCK_RETRY_MS: "250",
      UMW_METRICS_PORT: String(await freePort()),
    };
    // The relay creates the topics; the consumers then join their groups.
    await Promise.all([startWorker("command"), startWorker("relay")]);
    await Promise.all([startWorker("processor"), startWorker("cache-updater")]);
  });

  after(async () => {
    await Promise.all([...workers.values()].map((worker) => worker.stop()));
    client?.close();
    await db?.close();
    if (cache) {
      const keys = await cache.redis.keys(`${prefix}*`);
      if (keys.length) await cache.redis.del(...keys);
      await cache.close();
    }
    await database?.drop();
    certs?.remove();
    await dropKafkaPrefix(prefix).catch(() => undefined);
  });

  test("every accepted command is applied exactly once and the cache matches the database", async (t) => {
    const models: Model[] = Array.from({ length: ENTITIES }, (_, i) => ({ id: `e${i}`, exists: false, version: 0, data: undefined, busy: false, changes: 0 }));
    const sent: Sent[] = [];
    let acceptRetries = 0;
    const retryReasons = new Map<string, number>();
    let replays = 0;
    let counter = 0;

    /** Accepts with retries under the same key (safe by idempotency); resolves with the command id. */
    async function accept(call: (headers: Record<string, string>) => Promise<{ receipt?: { commandId: string } }>, key: string): Promise<string> {
      for (let attempt = 1; ; attempt++) {
        try {
          const response = await call({ "idempotency-key": key });
          return response.receipt!.commandId;
        } catch (error) {
          if (attempt >= 5) throw error;
          acceptRetries++;
          const reason = (error as { reason?: string }).reason ?? String(error);
          retryReasons.set(reason, (retryReasons.get(reason) ?? 0) + 1);
          await sleep(100 * attempt);
        }
      }
    }

    async function issue(model: Model): Promise<void> {
      const k = ++counter;
      const key = `chaos-${randomUUID()}`;
      const exact = Math.random() < 0.7;
      const expectedVersion = exact ? BigInt(model.version) : 0n;
      const base = { tenant: TENANT, type: TYPE, id: model.id };
      let op: Op;
      let call: (headers: Record<string, string>) => Promise<{ receipt?: { commandId: string } }>;
      let next: JsonObject | undefined;
      if (!model.exists) {
        op = "create";
        next = { n: k, label: `c${k}` };
        const data = next;
        call = (headers) => client.createEntity({ ...base, data }, { headers, timeoutMs: 10_000 });
      } else {
        const roll = Math.random();
        if (roll < 0.07) {
          op = "delete";
          next = undefined;
          call = (headers) => client.deleteEntity({ ...base, expectedVersion }, { headers, timeoutMs: 10_000 });
        } else if (roll < 0.55) {
          op = "update";
          next = { n: k, label: `u${k}` };
          const data = next;
          call = (headers) => client.updateEntity({ ...base, data, expectedVersion }, { headers, timeoutMs: 10_000 });
        } else {
          op = "patch";
          const patch: JsonObject = { n: k, extra: k % 3 === 0 ? null : `x${k}` };
          next = mergePatch(model.data!, patch);
          call = (headers) => client.patchEntity({ ...base, data: patch, expectedVersion }, { headers, timeoutMs: 10_000 });
        }
      }
      const commandId = await accept(call, key);
      model.version += 1;
      model.changes += 1;
      model.exists = op !== "delete";
      model.data = next;
      sent.push({ commandId, entityId: model.id, op, version: model.version });
      if (Math.random() < REPLAY_SHARE) {
        // A client retry after completion: the stored receipt, no second command.
        assert.equal(await accept(call, key), commandId, "a retry with the same key replays the same command");
        replays++;
      }
    }

    // The load: RATE_PER_S commands a second, each to an idle entity (one entity's commands in order).
    const failures: unknown[] = [];
    const inFlight = new Set<Promise<void>>();
    const loadStarted = performance.now();
    let issued = 0;
    const kills: string[] = [];
    const chaos = (async () => {
      for (const kill of KILLS) {
        await sleep(Math.max(0, loadStarted + kill.atMs - performance.now()));
        const victim = workers.get(kill.service)!;
        await victim.kill9();
        retired.push(victim);
        kills.push(`${kill.service} at ${((performance.now() - loadStarted) / 1000).toFixed(1)} s`);
        await sleep(kill.downMs);
        await startWorker(kill.service);
      }
    })();
    while (performance.now() - loadStarted < LOAD_MS) {
      const due = Math.floor(((performance.now() - loadStarted) / 1000) * RATE_PER_S);
      while (issued < due) {
        const idle = models.filter((model) => !model.busy);
        if (idle.length === 0) break;
        const model = idle[Math.floor(Math.random() * idle.length)]!;
        model.busy = true;
        issued++;
        const work = issue(model)
          .catch((error: unknown) => void failures.push(error))
          .finally(() => {
            model.busy = false;
            inFlight.delete(work);
          });
        inFlight.add(work);
      }
      await sleep(10);
    }
    await Promise.all(inFlight);
    await chaos;
    const loadStopped = performance.now();
    assert.deepEqual(failures, [], "every command was accepted");
    assert.equal(sent.length, issued);

    // Drain: every accepted command terminal, the outbox published, the cache in step.
    const count = async (sql: string, params: unknown[] = []) => Number((await db.query<{ n: string }>(sql, params)).rows[0]!.n);
    let lastProgress = "";
    await waitFor(
      async () => {
        const open = await count("SELECT count(*) AS n FROM umw_commands WHERE state = 'accepted'");
        const unpublished = await count("SELECT count(*) AS n FROM umw_outbox WHERE published_at IS NULL");
        const stale = open === 0 && unpublished === 0 ? (await compareCache()).length : -1;
        lastProgress = `${open} command(s) still accepted, ${unpublished} outbox row(s) unpublished, ${stale} cache mismatch(es)`;
        return stale === 0;
      },
      {
        what: "the write path drained after the load",
        timeoutMs: DRAIN_TIMEOUT_MS,
        everyMs: 100,
        detail: () => `${lastProgress}\n${[...workers.values()].map((worker) => `--- ${worker.name}\n${worker.output(40)}`).join("\n")}`,
      },
    );
    const drainMs = performance.now() - loadStopped;

    /** Entities whose cache entry differs from the database: [] when in step. */
    async function compareCache(): Promise<string[]> {
      const { rows: live } = await db.query<{ id: string; version: string; data: JsonObject }>(
        "SELECT id, version::text AS version, data FROM umw_entities WHERE tenant = $1 AND type = $2",
        [TENANT, TYPE],
      );
      const { rows: dead } = await db.query<{ id: string; version: string }>(
        "SELECT id, version::text AS version FROM umw_entity_tombstones WHERE tenant = $1 AND type = $2",
        [TENANT, TYPE],
      );
      const liveById = new Map(live.map((row) => [row.id, row]));
      const deadById = new Map(dead.map((row) => [row.id, row]));
      const raws = await cache.redis.mgetBuffer(...models.map((model) => cacheKey(prefix, TENANT, TYPE, model.id).entry));
      const problems: string[] = [];
      models.forEach((model, i) => {
        const raw = raws[i];
        const entry = raw ? decodeEntry(raw) : undefined;
        const row = liveById.get(model.id);
        if (row) {
          if (!entry) problems.push(`${model.id}: not cached, database at v${row.version}`);
          else if (entry.kind !== "entity" || entry.version !== BigInt(row.version)) problems.push(`${model.id}: cached ${entry.kind} v${entry.version}, database at v${row.version}`);
          else if (canonicalJson(entry.entity?.data ?? {}) !== canonicalJson(row.data)) problems.push(`${model.id}: cached data ${canonicalJson(entry.entity?.data)} != ${canonicalJson(row.data)}`);
        } else if (deadById.has(model.id)) {
          const version = BigInt(deadById.get(model.id)!.version);
          if (entry && !(entry.kind === "tombstone" && entry.version === version)) problems.push(`${model.id}: deleted at v${version} but cached ${entry.kind} v${entry.version}`);
        } else if (entry) {
          problems.push(`${model.id}: never written but cached ${entry.kind} v${entry.version}`);
        }
      });
      return problems;
    }

    // 1. Every accepted command applied, at the version the model predicts (none rejected: the
    //    model only sends what must apply, so a duplicate or a reordering would show as a conflict).
    const { rows: commands } = await db.query<{ id: string; entity_id: string; state: string; version: string | null; error: unknown }>(
      "SELECT id::text AS id, entity_id, state, version::text AS version, error FROM umw_commands",
    );
    assert.equal(commands.length, sent.length, "one command row per accepted command (replays made none)");
    const byId = new Map(commands.map((row) => [row.id, row]));
    const wrong = sent.filter((command) => {
      const row = byId.get(command.commandId);
      return !row || row.state !== "applied" || row.version !== String(command.version);
    });
    assert.deepEqual(
      wrong.slice(0, 5).map((command) => ({ ...command, row: byId.get(command.commandId) })),
      [],
      `${wrong.length} command(s) not applied at the predicted version`,
    );

    // 2. Exactly one inbox row per command (and none for anything else).
    const { rows: inbox } = await db.query<{ message_id: string }>("SELECT message_id FROM umw_inbox WHERE consumer = 'umw-processor'");
    const inboxCounts = countBy(inbox, (row) => row.message_id);
    assert.equal(inbox.length, sent.length, "one inbox row per command");
    for (const command of sent) assert.equal(inboxCounts.get(command.commandId), 1, `inbox rows of ${command.commandId}`);

    // 3. Each entity's version = its applied changes (re-creates continue above the deletion).
    const { rows: versions } = await db.query<{ id: string; version: string; live: boolean; data: JsonObject | null }>(
      `SELECT id, version::text AS version, true AS live, data FROM umw_entities WHERE tenant = $1 AND type = $2
       UNION ALL
       SELECT t.id, t.version::text, false, NULL FROM umw_entity_tombstones t
        WHERE t.tenant = $1 AND t.type = $2 AND NOT EXISTS (SELECT 1 FROM umw_entities e WHERE (e.tenant, e.type, e.id) = (t.tenant, t.type, t.id))`,
      [TENANT, TYPE],
    );
    const versionById = new Map(versions.map((row) => [row.id, row]));
    const appliedPerEntity = countBy(sent, (command) => command.entityId);
    for (const model of models) {
      const row = versionById.get(model.id);
      if (model.changes === 0) {
        assert.equal(row, undefined, `${model.id} was never written`);
        continue;
      }
      assert.ok(row, `${model.id} is in the database`);
      assert.equal(Number(row.version), appliedPerEntity.get(model.id), `${model.id}: version = number of applied changes`);
      assert.equal(row.live, model.exists, `${model.id}: live or deleted as the last command left it`);
      if (model.exists) assert.equal(canonicalJson(row.data), canonicalJson(model.data as JsonValue), `${model.id}: data`);
    }

    // 4. The domain events in the outbox: one per applied command, per entity versions 1..v without gaps.
    const { rows: events } = await db.query<{ payload: Buffer }>("SELECT payload FROM umw_outbox WHERE topic = $1 ORDER BY seq", [topics.entityEvents]);
    const decoded = events.map((row) => fromBinary(DomainEventSchema, row.payload));
    assert.equal(decoded.length, sent.length, "one domain event per applied command");
    assert.deepEqual(new Set(decoded.map((event) => event.commandId)), new Set(sent.map((command) => command.commandId)), "events name exactly the commands");
    const eventVersions = new Map<string, number[]>();
    for (const event of decoded) {
      assert.equal(event.entity?.tenant, TENANT);
      const list = eventVersions.get(event.entity!.id) ?? [];
      list.push(Number(event.entity!.version));
      eventVersions.set(event.entity!.id, list);
    }
    for (const [id, list] of eventVersions) {
      // In seq order the versions must already ascend: one entity's events are committed in order.
      assert.deepEqual(list, Array.from({ length: list.length }, (_, i) => i + 1), `${id}: event versions in outbox order`);
    }
    const kinds = countBy(decoded, (event) => ChangeKind[event.kind]);

    // 5. The cache matches the database (checked in the drain loop; asserted here with details).
    assert.deepEqual(await compareCache(), []);

    const processorDuplicates = [...retired, ...workers.values()].filter((w) => w.name === "processor").reduce((sum, w) => sum + w.count("duplicate message skipped"), 0);
    const seconds = (loadStopped - loadStarted) / 1000;
    const summary = [
      `commands accepted: ${sent.length} over ${seconds.toFixed(1)} s (${(sent.length / seconds).toFixed(0)}/s) on ${ENTITIES} entities; ` +
        `${replays} retries after acceptance replayed; ${acceptRetries} accept attempts retried with the same key (${[...retryReasons].map(([reason, n]) => `${reason} ${n}`).join(", ") || "none"})`,
      `commands: ${[...countBy(sent, (command) => command.op)].map(([op, n]) => `${op} ${n}`).join(", ")} (${sent.filter((c) => c.op === "create" && c.version > 1).length} re-creates); ` +
        `events: ${[...kinds].map(([kind, n]) => `${kind.toLowerCase()} ${n}`).join(", ")}; ${models.filter((m) => !m.exists && m.changes > 0).length} entities end deleted`,
      `kills (SIGKILL, restarted ${KILLS[0].downMs / 1000} s later): ${kills.join("; ")}`,
      `duplicates skipped by the processor's inbox: ${processorDuplicates}`,
      `time to drain after the load stopped: ${(drainMs / 1000).toFixed(1)} s`,
    ];
    for (const line of summary) t.diagnostic(line);
    console.log(`chaos summary:\n  ${summary.join("\n  ")}`);
  });
});
