// The Postgres primary restarts under load; umw stays up and keeps every promise its 202s made.
//
// `umw serve all` runs as a child process on real adapters: a PRIVATE Postgres (initdb + pg_ctl in a
// temporary folder on a free port, also used as the replica; the shared one on :15432 is never
// touched), the shared Redis and Kafka under a key/topic prefix of this run. Under a stream of
// creates and reads through the edge, the primary is restarted five times (`pg_ctl restart -m
// fast`, and stop → start with /readyz watched in between). Checked: the process never exits;
// every accepted command is applied exactly once (one command row, one inbox row, one entity at
// version 1, none lost, none doubled); the write path works again within seconds of each restart
// (printed); /readyz names the primary while it is down.
//
//   scripts/infra.sh up && node --import tsx --test test/chaos/pg-restart.test.ts
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { waitFor } from "../support/wait.js";
import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { appendFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { MESH_IDENTITIES } from "../../services/registry.js";
import { testCerts, type TestCerts } from "../support/certs.js";
import { infra, runId } from "../support/env.js";
import { dropKafkaPrefix } from "../support/kafka.js";
import { devAuthorization } from "../support/embedded-env.js";
import { freeServicePorts } from "../support/ports.js";
import { startPrivatePostgres, type PrivatePostgres } from "../support/private-postgres.js";

const TENANT = "pgr";
const TYPE = "item";
const COMMANDS_PER_S = 30;
const READS_PER_S = 60;
const RESTARTS = 5;
/** Load between two restarts. */
const BETWEEN_MS = 3_000;
/** How long the write path may take to work again after the primary is back. */
const RESUME_BOUND_MS = 10_000;
/** A client keeps retrying one command (same idempotency key) this long before giving up. */
const ACCEPT_PATIENCE_MS = 30_000;

const RESOURCES = {
  [TYPE]: { schema: { type: "object", required: ["n"], additionalProperties: false, properties: { n: { type: "integer" } } } },
};

interface Accepted {
  readonly key: string;
  readonly n: number;
  readonly commandId: string;
  readonly entityId: string;
}

describe("chaos: the Postgres primary restarts under load", { timeout: 150_000 }, () => {
  const prefix = `t${runId()}.`;
  let postgres: PrivatePostgres;
  let certs: TestCerts;
  let child: ChildProcess;
  let output = "";
  let exit: { code: number | null; signal: string | null } | undefined;
  let edge: string;
  let authorization: string;
  let db: pg.Pool;
  const startup: Record<string, number> = {};

  before(async () => {
    postgres = await startPrivatePostgres();
    certs = testCerts(MESH_IDENTITIES);
    const ports = await freeServicePorts();
    edge = `http://127.0.0.1:${ports.UMW_EDGE_PORT}`;
    authorization = await devAuthorization(certs.dir, ports.UMW_EDGE_PORT!, TENANT);
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      UMW_AUTH_MODE: "dev",
      UMW_AUTH_DEV_KEYS_DIR: join(certs.dir, "dev-issuer"),
      ...Object.fromEntries(Object.entries(ports).map(([name, port]) => [name, String(port)])),
      UMW_PG_URL: postgres.url,
      UMW_PG_REPLICA_URL: postgres.url,
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
      UMW_LOG_LEVEL: "info",
      // One token drives ~200 requests/s here: above the default per-principal bucket. This test is
      // about the primary restarting, not about rate limits (test/edge/rate-limit.test.ts is).
      UMW_RATE_LIMIT_ENABLED: "false",
    };
    const spawned = performance.now();
    child = spawn(process.execPath, ["bin/umw.mjs", "serve", "all"], { env, stdio: ["ignore", "pipe", "pipe"] });
    // UMW_TEST_SERVE_LOG=<file> keeps umw's whole log (for a failure's diagnosis).
    const logFile = process.env.UMW_TEST_SERVE_LOG;
    const keep = (chunk: Buffer) => {
      output = (output + chunk.toString("utf8")).slice(-60_000);
      if (logFile) appendFileSync(logFile, chunk);
    };
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    child.on("exit", (code, signal) => (exit = { code, signal }));
    db = new pg.Pool({ connectionString: postgres.url, max: 2 });
    db.on("error", () => undefined);

    const alive = () => assert.equal(exit, undefined, `umw exited during start-up:\n${output.slice(-5_000)}`);
    await waitFor(async () => (alive(), (await fetch(`${edge}/healthz`)).status === 200 || undefined), { what: "the edge to listen", timeoutMs: 60_000, everyMs: 25, tolerateErrors: true });
    startup.listenMs = performance.now() - spawned;
    // While the rest starts, /readyz is 503 and says what is missing.
    const early = await fetch(`${edge}/readyz`);
    startup.earlyReadyzStatus = early.status;
    const earlyBody = (await early.json()) as { notReady?: string[] };
    startup.earlyNotReady = earlyBody.notReady?.length ?? 0;
    let lastReadyz = "";
    try {
      await waitFor(async () => {
        alive();
        const response = await fetch(`${edge}/readyz`);
        lastReadyz = await response.text();
        return response.status === 200 || undefined;
      }, { what: "/readyz 200", timeoutMs: 60_000, everyMs: 25, tolerateErrors: true });
    } catch (error) {
      assert.fail(`${(error as Error).message}; last /readyz: ${lastReadyz}\n${output.slice(-5_000)}`);
    }
    startup.readyMs = performance.now() - spawned;
    console.log(`start-up: edge listening after ${startup.listenMs.toFixed(0)} ms, /readyz 200 after ${startup.readyMs.toFixed(0)} ms`);
  });

  after(async () => {
    if (child && exit === undefined) {
      const exited = once(child, "exit");
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(timer);
    }
    await db?.end().catch(() => undefined);
    await postgres?.destroy();
    certs?.remove();
    const { Redis } = await import("ioredis");
    const redis = new Redis(infra.redisUrl, { lazyConnect: true });
    redis.on("error", () => undefined);
    await redis.connect().catch(() => undefined);
    const keys = await redis.keys(`${prefix}*`).catch(() => [] as string[]);
    if (keys.length) await redis.del(...keys).catch(() => undefined);
    redis.disconnect();
    await dropKafkaPrefix(prefix).catch(() => undefined);
  });

  test("umw stays up, applies every accepted command exactly once, and writes resume within seconds", async () => {
    assert.ok(startup.earlyReadyzStatus === 503 || startup.earlyReadyzStatus === 200, "/readyz answers while services start");
    const accepted: Accepted[] = [];
    const givenUp: string[] = [];
    const answers = new Map<string, number>();
    const reads = new Map<string, number>();
    let n = 0;
    const count = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + 1);

    /** One create with its own key, retried under the same key until it is accepted (202). */
    async function create(): Promise<Accepted | undefined> {
      const key = `pgr-${randomUUID()}`;
      const value = ++n;
      const giveUpAt = Date.now() + ACCEPT_PATIENCE_MS;
      for (let attempt = 1; ; attempt++) {
        let status: number | string;
        try {
          const response = await fetch(`${edge}/v1/tenants/${TENANT}/types/${TYPE}/entities`, {
            method: "POST",
            headers: { authorization, "content-type": "application/json", "idempotency-key": `"${key}"` },
            body: JSON.stringify({ n: value }),
            signal: AbortSignal.timeout(20_000),
          });
          status = response.status;
          const body = (await response.json().catch(() => undefined)) as { receipt?: { commandId: string; entityId: string } } | undefined;
          if (status === 202 && body?.receipt) {
            count(answers, "202");
            const done = { key, n: value, commandId: body.receipt.commandId, entityId: body.receipt.entityId };
            accepted.push(done);
            return done;
          }
        } catch (error) {
          status = (error as Error).name;
        }
        count(answers, String(status));
        if (Date.now() > giveUpAt || exit !== undefined || !loading) {
          givenUp.push(`${key}: last answer ${status} after ${attempt} attempts`);
          return undefined;
        }
        await sleep(Math.min(50 * attempt, 500));
      }
    }

    async function read(): Promise<void> {
      const target = accepted[Math.floor(Math.random() * accepted.length)];
      if (!target) return;
      try {
        const response = await fetch(`${edge}/v1/tenants/${TENANT}/types/${TYPE}/entities/${target.entityId}`, { headers: { authorization }, signal: AbortSignal.timeout(20_000) });
        await response.arrayBuffer();
        count(reads, String(response.status));
      } catch (error) {
        count(reads, (error as Error).name);
      }
    }

    // The load: a fixed rate of creates and reads, each independent of the others.
    const inFlight = new Set<Promise<unknown>>();
    let loading = true;
    const load = (async () => {
      const started = performance.now();
      let writes = 0;
      let readsIssued = 0;
      while (loading) {
        const elapsed = (performance.now() - started) / 1000;
        while (writes < elapsed * COMMANDS_PER_S) {
          writes++;
          const work = create().finally(() => inFlight.delete(work));
          inFlight.add(work);
        }
        while (readsIssued < elapsed * READS_PER_S) {
          readsIssued++;
          const work = read().finally(() => inFlight.delete(work));
          inFlight.add(work);
        }
        await sleep(10);
      }
    })();

    const alive = () => assert.equal(exit, undefined, `umw exited: ${JSON.stringify(exit)}\n${output.slice(-8_000)}`);
    const applied = async (commandId: string) => {
      const { rows } = await db.query<{ state: string }>("SELECT state FROM umw_commands WHERE id = $1", [commandId]);
      return rows[0]?.state === "applied" ? true : undefined;
    };
    const appliedCount = async () => Number((await db.query<{ n: string }>("SELECT count(*) AS n FROM umw_commands WHERE state = 'applied'")).rows[0]!.n);
    /**
     * From the primary being back: the processor applies commands again (the count of applied ones
     * grows), and a new command through the edge is accepted, then applied (that one may queue
     * behind the backlog of its partition: printed, bounded only by the drain).
     */
    const writePathResumes = async () => {
      const back = performance.now();
      const appliedBefore = await waitFor(appliedCount, { what: "the primary to answer the test", timeoutMs: RESUME_BOUND_MS, everyMs: 25, tolerateErrors: true });
      const applying = waitFor(async () => ((await appliedCount()) > appliedBefore ? performance.now() - back : undefined), { what: "the processor to apply again", timeoutMs: RESUME_BOUND_MS, everyMs: 25, tolerateErrors: true });
      const probe = await create();
      alive();
      assert.ok(probe, `the probe command was accepted: ${givenUp.at(-1)}`);
      const acceptedAfter = performance.now() - back;
      const applyingAfter = await applying;
      await waitFor(() => applied(probe.commandId), { what: `probe ${probe.commandId} applied`, timeoutMs: 60_000, everyMs: 25, tolerateErrors: true });
      return { acceptedMs: acceptedAfter, applyingMs: applyingAfter, probeAppliedMs: performance.now() - back };
    };

    const restarts: string[] = [];
    const resumed: number[] = [];
    let readyzSawPrimaryDown = 0;
    const stopLoad = async () => {
      loading = false;
      await load;
      await Promise.all(inFlight);
    };
    try {
      await waitFor(async () => (accepted.length >= 10 ? true : undefined), { what: "the first accepted commands", timeoutMs: 15_000, everyMs: 25, tolerateErrors: true });
      for (let i = 1; i <= RESTARTS; i++) {
        await sleep(BETWEEN_MS);
        alive();
        const fast = i % 2 === 1;
        const before = performance.now();
        let downFor: number;
        if (fast) {
          // As in production: the primary gone for a fraction of a second.
          await postgres.restart();
          downFor = performance.now() - before;
        } else {
          await postgres.stop();
          // While it is down, /readyz must say the primary is not ready (and be 503).
          const seen = await waitFor(async () => {
            const response = await fetch(`${edge}/readyz`);
            const body = (await response.json()) as { notReady: string[] };
            return response.status === 503 && body.notReady.some((name) => name.startsWith("postgres primary")) ? body.notReady : undefined;
          }, { what: "/readyz to report the primary down", timeoutMs: 10_000, everyMs: 25, tolerateErrors: true });
          readyzSawPrimaryDown++;
          await postgres.start();
          downFor = performance.now() - before;
          assert.ok(seen.length > 0);
        }
        alive();
        const resume = await writePathResumes();
        alive();
        resumed.push(Math.max(resume.acceptedMs, resume.applyingMs));
        restarts.push(
          `#${i} ${fast ? "restart -m fast" : "stop/start"}: down ${downFor.toFixed(0)} ms; after the primary was back: commands applied again after ${resume.applyingMs.toFixed(0)} ms, ` +
            `a new command accepted after ${resume.acceptedMs.toFixed(0)} ms and applied after ${resume.probeAppliedMs.toFixed(0)} ms`,
        );
        // /readyz comes back to 200 once every pool has seen the primary again.
        await waitFor(async () => ((await fetch(`${edge}/readyz`)).status === 200 ? true : undefined), { what: "/readyz 200 again", timeoutMs: RESUME_BOUND_MS, everyMs: 25, tolerateErrors: true });
      }
      await sleep(BETWEEN_MS);
    } finally {
      await stopLoad();
    }
    alive();

    // Drain: every accepted command applied.
    const ids = accepted.map((command) => command.commandId);
    await waitFor(async () => {
      const { rows } = await db.query<{ n: string }>("SELECT count(*) AS n FROM umw_commands WHERE id = ANY($1::uuid[]) AND state = 'applied'", [ids]);
      return Number(rows[0]!.n) === ids.length ? true : undefined;
    }, { what: "every accepted command applied", timeoutMs: 30_000, everyMs: 25, tolerateErrors: true });

    const { rows: commands } = await db.query<{ id: string; state: string; entity_id: string }>(
      "SELECT id::text AS id, state, entity_id FROM umw_commands WHERE tenant = $1",
      [TENANT],
    );
    const { rows: inbox } = await db.query<{ message_id: string; n: string }>(
      "SELECT message_id, count(*) AS n FROM umw_inbox GROUP BY message_id",
    );
    const { rows: entities } = await db.query<{ id: string; version: string; n: number }>(
      "SELECT id, version::text AS version, (data->>'n')::int AS n FROM umw_entities WHERE tenant = $1 AND type = $2",
      [TENANT, TYPE],
    );
    const acceptedIds = new Set(ids);
    const lost = accepted.filter((command) => !commands.some((row) => row.id === command.commandId && row.state === "applied"));
    const extraCommands = commands.filter((row) => !acceptedIds.has(row.id));
    const doubledInbox = inbox.filter((row) => Number(row.n) !== 1);
    const entitiesByN = new Map<number, number>();
    for (const entity of entities) entitiesByN.set(entity.n, (entitiesByN.get(entity.n) ?? 0) + 1);
    const doubledEntities = [...entitiesByN.values()].filter((times) => times > 1).length;
    const notAtV1 = entities.filter((entity) => entity.version !== "1");

    console.log(`restarts:\n  ${restarts.join("\n  ")}`);
    console.log(
      `commands: ${n} sent, ${accepted.length} accepted (202), ${commands.filter((row) => row.state === "applied").length} applied; lost ${lost.length}, doubled ${doubledEntities + doubledInbox.length}; ` +
        `answers ${JSON.stringify(Object.fromEntries(answers))}; reads ${JSON.stringify(Object.fromEntries(reads))}; /readyz saw the primary down ${readyzSawPrimaryDown} time(s)`,
    );

    alive();
    assert.deepEqual(givenUp, [], "every command was accepted in the end (retried under its key)");
    assert.deepEqual(lost.slice(0, 5), [], `${lost.length} accepted command(s) not applied`);
    assert.deepEqual(extraCommands.slice(0, 5), [], "no command row beyond the accepted ones (retries replayed)");
    assert.equal(commands.length, accepted.length, "one command row per accepted command");
    assert.equal(inbox.length, accepted.length, "one inbox row per command");
    assert.deepEqual(doubledInbox, [], "no message claimed twice");
    assert.equal(entities.length, accepted.length, "one entity per accepted create");
    assert.equal(doubledEntities, 0, "no create applied twice");
    assert.deepEqual(notAtV1.slice(0, 5), [], "every entity at version 1");
    assert.equal(readyzSawPrimaryDown, Math.floor(RESTARTS / 2));
    for (const ms of resumed) assert.ok(ms < RESUME_BOUND_MS, `the write path resumed in ${ms.toFixed(0)} ms (bound ${RESUME_BOUND_MS} ms)`);
  });
});
