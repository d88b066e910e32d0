// Faults under load: `umw serve all` on PRIVATE stores (Redis, a single-node KRaft Kafka, a Postgres
// primary and its streaming replica, each in a temporary folder on free ports: the shared stores
// are never touched), driven through the edge by a mixed load: creates and patches (REST, each with
// its own idempotency key, retried under the same key until it gets its 202), cache-first reads,
// and realtime subscriptions (Connect server-streaming through the edge, resumed from their last
// position when a stream ends). After a stretch of load each fault in turn:
//
//   1. Redis stops and starts again (empty: no persistence),
//   2. the Kafka broker stops (controlled shutdown) and starts again,
//   3. the Postgres primary stops and starts again,
//   4. the read replica is killed (`pg_ctl stop -m immediate`) and brought back.
//
// Each store stays down until the load has made a given number of attempts against it (no fixed
// sleep), then comes back. Checked: umw never exits; reads during the Redis outage are served
// (>= 90 %, from the backend: no 5xx storm); accepts during the Kafka outage keep succeeding (the
// outbox absorbs them) and are applied after it; while the primary is down a write is refused
// promptly with 503 + Retry-After (no unbounded queueing); reads of existing entities while the replica
// is down are served (>= 90 %: cache, or stale). Afterwards: every command that got a 202 is applied exactly once (one
// command row, one inbox row, entity versions as predicted), nothing else was applied, the cache
// equals the database for every touched entity, and every subscriber saw each entity's versions in
// order or was told of a gap (StreamReset, then a snapshot) and resumed. A table of the outages and
// the time to recover from each is printed (docs/benchmarks.md keeps one).
//
//   scripts/infra.sh up kafka && node --import tsx --test test/chaos/faults-under-load.test.ts
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { createClient as createConnectClient, ConnectError, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { JsonObject } from "@bufbuild/protobuf";
import { Redis } from "ioredis";
import pg from "pg";
import { RealtimeService, type SubscribeResponse } from "../../gen/umw/v1/realtime_pb.js";
import { decodeEntry } from "../../runtime/cache/entry.js";
import { cacheKey } from "../../runtime/cache/keys.js";
import { canonicalJson } from "../../services/command/idempotency.js";
import { MESH_IDENTITIES } from "../../services/registry.js";
import { testCerts, type TestCerts } from "../support/certs.js";
import { devAuthorization } from "../support/embedded-env.js";
import { runId } from "../support/env.js";
import { freeServicePorts } from "../support/ports.js";
import { startPrivateKafka, type PrivateKafka } from "../support/private-kafka.js";
import { startPrivatePostgres, type PrivatePostgres } from "../support/private-postgres.js";
import { startPrivateReplica } from "../support/private-postgres-replica.js";
import { startPrivateRedis, type PrivateRedis } from "../support/private-redis.js";
import { ServeProcess } from "../support/serve-process.js";
import { waitFor } from "../support/wait.js";

const TENANT = "faults";
const TYPE = "item";
/** Entities created first; then every write patches one of them. */
const ENTITIES = 40;
const WRITES_PER_S = 12;
const READS_PER_S = 25;
/**
 * Requests in flight at most, as a real client pool has: beyond it a due request is skipped (and
 * counted), so a slow umw (or a machine shared with other work) is not buried by a queue of the
 * generator's own making.
 */
const MAX_IN_FLIGHT = { read: 25, write: 15 };
const SUBSCRIBERS = 3;
/** Share of reads for ids that never exist: they always reach the replica (the others are mostly cache hits). */
const MISSING_READS = 0.04;
/** Load between two faults: this many commands accepted and reads served since the last recovery. */
const STRETCH = { accepted: 40, served: 80 };
/** A store stays down until the load has made this many attempts while it is down. */
const OUTAGE = { reads: 60, writes: 30 };
/** A client retries one command (same key) this long before giving up. */
const ACCEPT_PATIENCE_MS = 45_000;
/** A request's own deadline: a request the edge queued this long would count as a hang. */
const REQUEST_TIMEOUT_MS = 10_000;
/** Share of reads that must be served (200/404, not 5xx or a timeout) during the Redis and replica outages. */
const SERVED_SHARE = 0.9;
/** "Rates are normal again": a second in which at least 95 % of the attempts succeeded and at least this share of the nominal rate was answered. */
const NORMAL_SHARE = 0.5;

/** Which faults run (all by default; `UMW_CHAOS_FAULTS=kafka,replica` narrows it while investigating one). */
const FAULTS = new Set((process.env.UMW_CHAOS_FAULTS ?? "redis,kafka,primary,replica").split(","));

const RESOURCES = {
  [TYPE]: { schema: { type: "object", required: ["n"], additionalProperties: false, properties: { n: { type: "integer" } } } },
};

/** One HTTP attempt of the load generator. */
interface Attempt {
  readonly kind: "read" | "write";
  /** ms since the load started, when it was sent. */
  readonly at: number;
  readonly ms: number;
  /** HTTP status, or the error's name (TimeoutError, TypeError for a refused connection). */
  readonly status: string;
  readonly retryAfter: boolean;
  readonly cacheStatus: string;
  /** The ErrorInfo reason of a refusal. */
  readonly reason: string;
  /** A read of an id that never exists: never cached, so always a load from the replica. */
  readonly missing: boolean;
}

interface Entity {
  id: string;
  /** Version the last accepted command produces. */
  version: number;
  /** `n` of the last accepted command. */
  n: number;
  busy: boolean;
  readonly commandIds: string[];
}

interface FaultReport {
  readonly name: string;
  readonly downMs: number;
  readonly reads: Map<string, number>;
  readonly writes: Map<string, number>;
  readonly firstSuccessMs: number;
  readonly firstSuccessWhat: string;
  readonly normalMs: number;
  readonly note: string;
}

const served = (status: string) => status === "200" || status === "404";
const countInto = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + 1);
const countAll = (attempts: readonly Attempt[]) => attempts.reduce((counts, attempt) => countInto(counts, attempt.status), new Map<string, number>());
const describeCounts = (map: Map<string, number>) => [...map].sort(([a], [b]) => a.localeCompare(b)).map(([key, n]) => `${key}×${n}`).join(" ") || "-";

/** A subscriber to every change of the type, that resumes from its last position whenever its stream ends. */
class Subscriber {
  /** Version of each entity as this subscriber knows it. */
  readonly known = new Map<string, bigint>();
  /** A version that skipped the next one with no reset or conflation announcing it: must stay empty. */
  readonly silentGaps: string[] = [];
  readonly endings = new Map<string, number>();
  resets = 0;
  resumes = 0;
  private position = "";
  private readonly controller = new AbortController();
  private readonly done: Promise<void>;

  constructor(private readonly client: Client<typeof RealtimeService>) {
    this.done = this.run();
  }

  private async run(): Promise<void> {
    for (let attempt = 0; !this.controller.signal.aborted; attempt++) {
      try {
        const stream = this.client.subscribe(
          { tenant: TENANT, topics: [{ target: { case: "type", value: TYPE } }], snapshot: true, resumeToken: this.position },
          { signal: this.controller.signal },
        );
        for await (const message of stream) {
          attempt = 0;
          this.handle(message);
        }
        countInto(this.endings, "ended");
      } catch (error) {
        if (this.controller.signal.aborted) return;
        countInto(this.endings, error instanceof ConnectError ? `${error.code}` : (error as Error).name);
      }
      if (this.controller.signal.aborted) return;
      this.resumes++;
      // A client's reconnect back-off, not a wait of the test.
      await sleep(Math.min(100 * 2 ** attempt, 1_000));
    }
  }

  private handle(message: SubscribeResponse): void {
    if (message.position) this.position = message.position;
    switch (message.message.case) {
      case "reset":
        this.resets++;
        this.known.clear();
        break;
      case "snapshot":
        for (const entity of message.message.value.entities) this.known.set(entity.id, entity.version);
        break;
      case "change": {
        const { entity, conflated } = message.message.value;
        const before = this.known.get(entity!.id) ?? 0n;
        if (entity!.version <= before) break; // seen already (a resume from an older position)
        if (entity!.version !== before + 1n && !conflated) this.silentGaps.push(`${entity!.id}: v${before} then v${entity!.version}`);
        this.known.set(entity!.id, entity!.version);
        break;
      }
      default:
    }
  }

  async close(): Promise<void> {
    this.controller.abort();
    await this.done;
  }
}

describe("chaos: Redis, Kafka, the Postgres primary and the replica fail under load", { timeout: 300_000 }, () => {
  const prefix = `t${runId()}.`;
  let redis: PrivateRedis;
  let kafka: PrivateKafka;
  let primary: PrivatePostgres;
  let replica: PrivatePostgres;
  let certs: TestCerts;
  let umw: ServeProcess;
  let edge: string;
  let authorization: string;
  let db: pg.Pool;
  const subscribers: Subscriber[] = [];

  before(async () => {
    [redis, kafka, primary] = await Promise.all([startPrivateRedis(), startPrivateKafka(), startPrivatePostgres()]);
    replica = await startPrivateReplica(primary);
    certs = testCerts(MESH_IDENTITIES);
    const ports = await freeServicePorts();
    edge = `http://127.0.0.1:${ports.UMW_EDGE_PORT}`;
    authorization = await devAuthorization(certs.dir, ports.UMW_EDGE_PORT!, TENANT);
    const inherited = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("UMW_")));
    umw = await ServeProcess.start(["all"], {
      ...inherited,
      ...Object.fromEntries(Object.entries(ports).map(([name, port]) => [name, String(port)])),
      UMW_AUTH_MODE: "dev",
      UMW_AUTH_DEV_KEYS_DIR: join(certs.dir, "dev-issuer"),
      UMW_CERTS_DIR: certs.dir,
      UMW_PG_URL: primary.url,
      UMW_PG_REPLICA_URL: replica.url,
      UMW_REDIS_URL: redis.url,
      UMW_KAFKA_BROKERS: kafka.broker,
      UMW_KAFKA_SASL_MECHANISM: "none",
      UMW_TOPIC_PREFIX: prefix,
      UMW_CACHE_KEY_PREFIX: prefix,
      UMW_TOPIC_PARTITIONS: "4",
      UMW_CONFIG: "",
      UMW_RESOURCES: JSON.stringify(RESOURCES),
      UMW_RELAY_POLL_MS: "200",
      UMW_RELAY_LOCK_RETRY_MS: "250",
      UMW_LOG_LEVEL: "info",
      // Rate limiting stays on (its Redis fails with the cache's: the limiter must fail open), with
      // buckets above what the one token of this load sends.
      UMW_RATE_LIMIT_PRINCIPAL: "2000/4000",
      UMW_RATE_LIMIT_TENANT: "4000/8000",
    });
    db = new pg.Pool({ connectionString: primary.url, max: 3 });
    db.on("error", () => undefined);
    await waitFor(async () => ((await fetch(`${edge}/readyz`)).status === 200 ? true : undefined), { what: "/readyz 200", timeoutMs: 60_000, everyMs: 50, tolerateErrors: true });
  });

  after(async () => {
    // UMW_TEST_SERVE_LOG=<file> keeps umw's whole log (for a failure's diagnosis).
    if (umw && process.env.UMW_TEST_SERVE_LOG) writeFileSync(process.env.UMW_TEST_SERVE_LOG, umw.lines.join("\n"));
    await Promise.all(subscribers.map((subscriber) => subscriber.close()));
    await umw?.stop();
    await db?.end().catch(() => undefined);
    await Promise.all([redis?.destroy(), kafka?.destroy(), replica?.destroy()]);
    await primary?.destroy();
    certs?.remove();
  });

  test("nothing acknowledged is lost or doubled, reads stay served, and every fault is recovered from", async (t) => {
    const alive = () => assert.ok(umw.running, `umw exited:\n${umw.output(80)}`);
    const attempts: Attempt[] = [];
    const entities: Entity[] = [];
    const givenUp: string[] = [];
    const t0 = performance.now();
    const now = () => performance.now() - t0;
    let n = 0;
    let accepted = 0;
    let readsServed = 0;

    async function send(kind: Attempt["kind"], url: string, init: RequestInit = {}, missing = false): Promise<{ status: number; body: unknown } | undefined> {
      const at = now();
      let status: string;
      let retryAfter = false;
      let cacheStatus = "";
      let result: { status: number; body: unknown } | undefined;
      try {
        const response = await fetch(url, { ...init, headers: { authorization, ...init.headers }, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
        status = String(response.status);
        retryAfter = response.headers.has("retry-after");
        cacheStatus = response.headers.get("cache-status") ?? "";
        result = { status: response.status, body: await response.json().catch(() => undefined) };
      } catch (error) {
        status = (error as Error).name;
      }
      const reason = (result?.body as { details?: { reason?: string }[] } | undefined)?.details?.[0]?.reason ?? "";
      attempts.push({ kind, at, ms: now() - at, status, retryAfter, cacheStatus, reason, missing });
      return result;
    }

    /** One command under its own key, retried under the same key until it is accepted. */
    async function command(entity: Entity, create: boolean): Promise<void> {
      const key = `faults-${randomUUID()}`;
      const value = ++n;
      const url = create ? `${edge}/v1/tenants/${TENANT}/types/${TYPE}/entities` : `${edge}/v1/tenants/${TENANT}/types/${TYPE}/entities/${entity.id}`;
      const giveUpAt = now() + ACCEPT_PATIENCE_MS;
      for (let attempt = 1; ; attempt++) {
        const answer = await send("write", url, {
          method: create ? "POST" : "PATCH",
          headers: { "content-type": "application/json", "idempotency-key": `"${key}"` },
          body: JSON.stringify({ n: value }),
        });
        const receipt = (answer?.body as { receipt?: { commandId: string; entityId: string } } | undefined)?.receipt;
        if (answer?.status === 202 && receipt) {
          if (create) entity.id = receipt.entityId;
          entity.version += 1;
          entity.n = value;
          entity.commandIds.push(receipt.commandId);
          accepted++;
          return;
        }
        if (now() > giveUpAt || !umw.running) {
          givenUp.push(`${key}: last answer ${answer?.status ?? "no answer"} after ${attempt} attempts`);
          return;
        }
        await sleep(Math.min(50 * attempt, 500)); // the client's back-off
      }
    }

    async function read(): Promise<void> {
      if (Math.random() < MISSING_READS) {
        const answer = await send("read", `${edge}/v1/tenants/${TENANT}/types/${TYPE}/entities/missing-${randomUUID()}`, {}, true);
        if (answer && served(String(answer.status))) readsServed++;
        return;
      }
      const written = entities.filter((entity) => entity.version > 0);
      const target = written[Math.floor(Math.random() * written.length)];
      if (!target) return;
      const answer = await send("read", `${edge}/v1/tenants/${TENANT}/types/${TYPE}/entities/${target.id}`);
      if (answer && served(String(answer.status))) readsServed++;
    }

    // The subscribers, through the edge over Connect (what a browser uses).
    const transport = createConnectTransport({
      baseUrl: edge,
      httpVersion: "1.1",
      useBinaryFormat: true,
      interceptors: [(next) => (request) => (request.header.set("authorization", authorization), next(request))],
    });
    for (let i = 0; i < SUBSCRIBERS; i++) subscribers.push(new Subscriber(createConnectClient(RealtimeService, transport)));

    // The load: writes and reads at fixed rates, each independent; one command per entity at a time.
    let loading = true;
    const inFlight = new Set<Promise<void>>();
    const track = (work: Promise<void>) => {
      inFlight.add(work);
      void work.finally(() => inFlight.delete(work));
    };
    const busy = { read: 0, write: 0 };
    const skipped = { read: 0, write: 0 };
    const pooled = (kind: Attempt["kind"], work: () => Promise<void>) => {
      busy[kind]++;
      track(work().finally(() => busy[kind]--));
    };
    const load = (async () => {
      let writes = 0;
      let reads = 0;
      while (loading) {
        const seconds = now() / 1000;
        while (writes < seconds * WRITES_PER_S) {
          writes++;
          if (busy.write >= MAX_IN_FLIGHT.write) {
            skipped.write++;
            continue;
          }
          if (entities.length < ENTITIES) {
            const entity: Entity = { id: "", version: 0, n: 0, busy: true, commandIds: [] };
            entities.push(entity);
            pooled("write", () => command(entity, true).finally(() => (entity.busy = false)));
            continue;
          }
          const idle = entities.filter((entity) => !entity.busy && entity.version > 0);
          const entity = idle[Math.floor(Math.random() * idle.length)];
          if (!entity) continue;
          entity.busy = true;
          pooled("write", () => command(entity, false).finally(() => (entity.busy = false)));
        }
        while (reads < seconds * READS_PER_S) {
          reads++;
          if (busy.read >= MAX_IN_FLIGHT.read) skipped.read++;
          else pooled("read", read);
        }
        await sleep(10);
      }
    })();

    const appliedCount = async () => Number((await db.query<{ n: string }>("SELECT count(*) AS n FROM umw_commands WHERE state = 'applied'")).rows[0]!.n);
    const since = (from: number, kind: Attempt["kind"]) => attempts.filter((attempt) => attempt.kind === kind && attempt.at >= from);
    /** A stretch of load: enough commands accepted and reads served since `from`. */
    const stretch = async (from: { accepted: number; served: number }) =>
      waitFor(() => (alive(), accepted - from.accepted >= STRETCH.accepted && readsServed - from.served >= STRETCH.served), {
        what: "a stretch of load",
        timeoutMs: 60_000,
        everyMs: 25,
        detail: () => umw.output(30),
      });
    /**
     * The first second after `from` in which every attempt succeeded and the rates were near nominal,
     * in ms after `from`. A second is judged once its attempts have had a second more to finish.
     */
    const normalAfter = async (from: number) =>
      waitFor(
        () => {
          alive();
          const ok = (attempt: Attempt) => (attempt.kind === "read" ? served(attempt.status) : attempt.status === "202");
          const window = attempts.filter((attempt) => attempt.at >= from).sort((x, y) => x.at - y.at);
          for (const { at: begin } of window) {
            if (begin + 2_000 > now()) break;
            const second = window.filter((attempt) => attempt.at >= begin && attempt.at < begin + 1_000);
            const reads = second.filter((attempt) => attempt.kind === "read").length;
            const writes = second.filter((attempt) => attempt.kind === "write").length;
            if (second.filter(ok).length >= 0.95 * second.length && reads >= READS_PER_S * NORMAL_SHARE && writes >= WRITES_PER_S * NORMAL_SHARE) return begin - from;
          }
          return undefined;
        },
        { what: "the rates to be normal again", timeoutMs: 60_000, everyMs: 100 },
      );

    /** Where the write path stands: commands not yet applied, outbox rows not yet published (per topic). */
    const writePathState = async () => {
      const { rows: open } = await db.query<{ n: string }>("SELECT count(*) AS n FROM umw_commands WHERE state = 'accepted'");
      const { rows: unpublished } = await db.query<{ topic: string; n: string }>("SELECT topic, count(*) AS n FROM umw_outbox WHERE published_at IS NULL GROUP BY topic");
      return `${open[0]!.n} command(s) accepted and not applied; unpublished outbox rows: ${unpublished.map((row) => `${row.topic} ${row.n}`).join(", ") || "none"}`;
    };
    const reports: FaultReport[] = [];
    /**
     * One fault: `down`, the load goes on until it has made OUTAGE attempts against the dead store,
     * `up`; then the time to the first success that shows the store in use again, and to normal rates.
     */
    async function fault(
      id: string,
      name: string,
      down: () => Promise<void>,
      up: () => Promise<void>,
      firstSuccess: (back: number) => Promise<{ ms: number; what: string }>,
      check: (during: { reads: Attempt[]; writes: Attempt[]; downAt: number }, back: number) => Promise<string>,
    ): Promise<void> {
      if (!FAULTS.has(id)) return;
      await stretch({ accepted, served: readsServed });
      alive();
      const downAt = now();
      await down();
      await waitFor(() => (alive(), since(downAt, "read").length >= OUTAGE.reads && since(downAt, "write").length >= OUTAGE.writes), {
        what: `${OUTAGE.reads} reads and ${OUTAGE.writes} write attempts while ${name}`,
        timeoutMs: 60_000,
        everyMs: 25,
      });
      await up();
      const back = now();
      alive();
      const during = { downAt, reads: attempts.filter((a) => a.kind === "read" && a.at >= downAt && a.at < back), writes: attempts.filter((a) => a.kind === "write" && a.at >= downAt && a.at < back) };
      const first = await firstSuccess(back);
      const normalMs = await normalAfter(back);
      const note = await check(during, back);
      const statuses = (list: Attempt[]) => {
        const counts = new Map<string, number>();
        for (const attempt of list) countInto(counts, attempt.status);
        return counts;
      };
      reports.push({ name, downMs: back - downAt, reads: statuses(during.reads), writes: statuses(during.writes), firstSuccessMs: first.ms, firstSuccessWhat: first.what, normalMs, note });
    }

    /** The first attempt after `back` that matches, in ms after `back`. */
    const firstAttempt = (back: number, what: string, match: (attempt: Attempt) => boolean) =>
      waitFor(() => (alive(), attempts.find((attempt) => attempt.at >= back && match(attempt))), { what, timeoutMs: 30_000, everyMs: 10 }).then((attempt) => ({
        ms: attempt.at + attempt.ms - back,
        what,
      }));
    const firstApplied = async (back: number) => {
      const before = await waitFor(appliedCount, { what: "the primary to answer", timeoutMs: 30_000, everyMs: 25, tolerateErrors: true });
      await waitFor(async () => (await appliedCount()) > before, { what: "a command applied again", timeoutMs: 30_000, everyMs: 25, tolerateErrors: true });
      return { ms: now() - back, what: "a command applied" };
    };
    const shareServed = (reads: Attempt[]) => reads.filter((attempt) => served(attempt.status)).length / Math.max(1, reads.length);

    try {
      await waitFor(() => (alive(), entities.length === ENTITIES && entities.every((entity) => entity.version > 0)), { what: "every entity created", timeoutMs: 30_000, everyMs: 25 });

      await fault(
        "redis",
        "Redis stopped and started (empty)",
        () => redis.stop(),
        () => redis.start(),
        (back) => firstAttempt(back, "a read stored in or served from Redis", (attempt) => attempt.kind === "read" && /; hit; ttl=|; stored/.test(attempt.cacheStatus)),
        async ({ reads, writes }) => {
          const share = shareServed(reads);
          assert.ok(share >= SERVED_SHARE, `reads served during the Redis outage: ${(share * 100).toFixed(1)} % (bound ${SERVED_SHARE * 100} %)`);
          const accepts = writes.filter((attempt) => attempt.status === "202").length / Math.max(1, writes.length);
          assert.ok(accepts >= SERVED_SHARE, `writes accepted during the Redis outage: ${(accepts * 100).toFixed(1)} %`);
          return `${(share * 100).toFixed(0)} % of reads of existing entities served (${reads.filter((a) => a.cacheStatus.includes("cache-unavailable")).length} from the backend, cache down)`;
        },
      );

      let acceptedBeforeKafka = 0;
      await fault(
        "kafka",
        "Kafka broker stopped and started",
        async () => {
          acceptedBeforeKafka = accepted;
          await kafka.stop();
        },
        () => kafka.start(),
        firstApplied,
        async ({ writes, reads, downAt }, back) => {
          const statuses = new Map<string, number>();
          for (const attempt of writes) countInto(statuses, attempt.status);
          const readStatuses = new Map<string, number>();
          for (const attempt of reads) countInto(readStatuses, attempt.status);
          const latencies = (list: Attempt[]) => {
            const ms = list.map((attempt) => attempt.ms).sort((x, y) => x - y);
            return `p50 ${ms[Math.floor(ms.length / 2)]?.toFixed(0)} ms, max ${ms.at(-1)?.toFixed(0)} ms`;
          };
          t.diagnostic(`kafka outage: reads ${describeCounts(readStatuses)} (${latencies(reads)}); accepted writes ${latencies(writes.filter((a) => a.status === "202"))}; writes before it ${latencies(attempts.filter((a) => a.kind === "write" && a.at < downAt))}`);
          // Accepts keep succeeding: no refusal at all (a 5xx would mean the accept path needs Kafka),
          // and at most a few attempts without an answer in time on a busy machine.
          const refused = writes.filter((attempt) => /^\d+$/.test(attempt.status) && attempt.status !== "202");
          assert.deepEqual(refused.slice(0, 5), [], `no write refused during the Kafka outage: ${describeCounts(statuses)}`);
          const share = (statuses.get("202") ?? 0) / Math.max(1, writes.length);
          assert.ok(share >= SERVED_SHARE, `write attempts accepted during the Kafka outage: ${(share * 100).toFixed(1)} % (${describeCounts(statuses)}; down ${(back - downAt).toFixed(0)} ms)`);
          // Drain: every command accepted until now is applied.
          const ids = entities.flatMap((entity) => entity.commandIds);
          const started = now();
          await waitFor(
            async () => Number((await db.query<{ n: string }>("SELECT count(*) AS n FROM umw_commands WHERE id = ANY($1::uuid[]) AND state = 'applied'", [ids])).rows[0]!.n) === ids.length,
            { what: "the commands accepted during the Kafka outage applied", timeoutMs: 60_000, everyMs: 50 },
          ).catch(async (error: unknown) => assert.fail(`${(error as Error).message}; ${await writePathState()}\n${umw.output(30)}`));
          return `${accepted - acceptedBeforeKafka} commands accepted during it, all applied ${(now() - started).toFixed(0)} ms after the recovery checks`;
        },
      );

      await fault(
        "primary",
        "Postgres primary stopped and started",
        () => primary.stop(),
        () => primary.start(),
        (back) => firstAttempt(back, "a command accepted", (attempt) => attempt.kind === "write" && attempt.status === "202"),
        async ({ writes }) => {
          const refused = writes.filter((attempt) => attempt.status !== "202");
          assert.ok(refused.length > 0, "writes were refused while the primary was down");
          const shed = refused.filter((attempt) => attempt.status === "503" && attempt.retryAfter);
          assert.deepEqual(
            refused.filter((attempt) => !(attempt.status === "503" && attempt.retryAfter)).slice(0, 5),
            [],
            "every refusal while the primary is down is 503 with Retry-After",
          );
          const slowest = Math.max(...writes.map((attempt) => attempt.ms));
          assert.ok(slowest < REQUEST_TIMEOUT_MS, `a write waited ${slowest.toFixed(0)} ms`);
          return `${shed.length} writes shed with 503 + Retry-After, the slowest answer after ${slowest.toFixed(0)} ms`;
        },
      );

      await fault(
        "replica",
        "read replica killed and restarted",
        () => replica.kill(),
        () => replica.start(),
        (back) => firstAttempt(back, "a read answered by the replica", (attempt) => attempt.missing && attempt.status === "404"),
        async ({ reads }) => {
          // Reads of missing ids have nothing cached: only the replica can answer them, so they are not counted.
          const share = shareServed(reads.filter((attempt) => !attempt.missing));
          assert.ok(share >= SERVED_SHARE, `reads of existing entities served while the replica was down: ${(share * 100).toFixed(1)} %`);
          const missing = reads.filter((attempt) => attempt.missing);
          return `${(share * 100).toFixed(0)} % of reads of existing entities served (${reads.filter((a) => a.cacheStatus.includes("stale")).length} stale); reads of missing ids (only the replica can answer): ${describeCounts(countAll(missing))}`;
        },
      );
      await stretch({ accepted, served: readsServed });
    } finally {
      loading = false;
      await load;
      await Promise.all(inFlight);
    }
    alive();
    assert.deepEqual(givenUp, [], "every command was accepted in the end (retried under its key)");

    // Drain: every accepted command applied.
    const ids = entities.flatMap((entity) => entity.commandIds);
    await waitFor(
      async () => Number((await db.query<{ n: string }>("SELECT count(*) AS n FROM umw_commands WHERE id = ANY($1::uuid[]) AND state = 'applied'", [ids])).rows[0]!.n) === ids.length,
      { what: "every accepted command applied", timeoutMs: 60_000, everyMs: 50, tolerateErrors: true, detail: () => umw.output(30) },
    );

    // 0 lost, 0 doubled: one command row and one inbox row per 202, entities at the predicted version and data.
    const { rows: commands } = await db.query<{ id: string; state: string }>("SELECT id::text AS id, state FROM umw_commands");
    const { rows: inbox } = await db.query<{ message_id: string; n: string }>("SELECT message_id, count(*) AS n FROM umw_inbox WHERE consumer = 'umw-processor' GROUP BY message_id");
    const { rows: stored } = await db.query<{ id: string; version: string; data: JsonObject }>("SELECT id, version::text AS version, data FROM umw_entities WHERE tenant = $1 AND type = $2", [
      TENANT,
      TYPE,
    ]);
    const acceptedIds = new Set(ids);
    assert.equal(acceptedIds.size, ids.length, "every 202 named its own command");
    assert.deepEqual(commands.filter((row) => !acceptedIds.has(row.id)).slice(0, 5), [], "no command beyond the accepted ones (retries replayed)");
    assert.deepEqual(commands.filter((row) => row.state !== "applied").slice(0, 5), [], "every command applied");
    assert.equal(commands.length, ids.length, "one command row per 202");
    assert.deepEqual(inbox.filter((row) => Number(row.n) !== 1 || !acceptedIds.has(row.message_id)).slice(0, 5), [], "each command claimed once by the processor");
    assert.equal(inbox.length, ids.length, "one inbox row per command");
    const storedById = new Map(stored.map((row) => [row.id, row]));
    assert.equal(stored.length, ENTITIES, "one entity per accepted create");
    for (const entity of entities) {
      const row = storedById.get(entity.id);
      assert.ok(row, `${entity.id} stored`);
      assert.equal(Number(row.version), entity.version, `${entity.id}: one version per accepted command`);
      assert.equal(canonicalJson(row.data), canonicalJson({ n: entity.n }), `${entity.id}: the last accepted command's data`);
    }

    // The cache equals the database: each entry present is the stored version and data (an entity
    // not touched since Redis came back empty may be absent), and a read through the edge answers it.
    const cacheClient = new Redis(redis.url);
    try {
      const mismatches = async () => {
        const raws = await cacheClient.mgetBuffer(...entities.map((entity) => cacheKey(prefix, TENANT, TYPE, entity.id).entry));
        const problems: string[] = [];
        entities.forEach((entity, i) => {
          const row = storedById.get(entity.id)!;
          const entry = raws[i] ? decodeEntry(raws[i]!) : undefined;
          if (!entry) return;
          if (entry.kind !== "entity" || entry.version !== BigInt(row.version) || canonicalJson(entry.entity?.data ?? {}) !== canonicalJson(row.data)) {
            problems.push(`${entity.id}: cached ${entry.kind} v${entry.version}, database v${row.version}`);
          }
        });
        return problems;
      };
      await waitFor(async () => (await mismatches()).length === 0, { what: "the cache to equal the database", timeoutMs: 30_000, everyMs: 100, detail: () => "" }).catch(async (error: unknown) => {
        assert.fail(`${(error as Error).message}: ${(await mismatches()).slice(0, 5).join("; ")}`);
      });
      for (const entity of entities) {
        const response = await fetch(`${edge}/v1/tenants/${TENANT}/types/${TYPE}/entities/${entity.id}`, { headers: { authorization } });
        const body = (await response.json()) as { entity?: { version: string; data: JsonObject } };
        assert.equal(response.status, 200, `${entity.id} read through the edge`);
        assert.equal(body.entity?.version, String(entity.version), `${entity.id}: the edge answers the stored version`);
      }
      assert.deepEqual(await mismatches(), [], "the cache still equals the database after every entity was read");
    } finally {
      cacheClient.disconnect();
    }

    // Every subscriber has every entity at its stored version, and never skipped a version silently.
    await waitFor(() => subscribers.every((subscriber) => entities.every((entity) => subscriber.known.get(entity.id) === BigInt(entity.version))), {
      what: "every subscriber at the stored versions",
      timeoutMs: 30_000,
      everyMs: 50,
      detail: () =>
        subscribers
          .map((subscriber, i) => `subscriber ${i}: ${entities.filter((entity) => subscriber.known.get(entity.id) !== BigInt(entity.version)).length} entities behind`)
          .join("; "),
    });
    await Promise.all(subscribers.map((subscriber) => subscriber.close()));
    for (const [i, subscriber] of subscribers.entries()) assert.deepEqual(subscriber.silentGaps.slice(0, 5), [], `subscriber ${i}: no silent gap`);

    const reads = attempts.filter((attempt) => attempt.kind === "read");
    const table = [
      "| fault | down (ms) | reads while down | write attempts while down | first success after the store is back | rates normal after | |",
      "|---|---|---|---|---|---|---|",
      ...reports.map(
        (report) =>
          `| ${report.name} | ${report.downMs.toFixed(0)} | ${describeCounts(report.reads)} | ${describeCounts(report.writes)} | ${report.firstSuccessMs.toFixed(0)} ms (${report.firstSuccessWhat}) | ${report.normalMs.toFixed(0)} ms | ${report.note} |`,
      ),
    ];
    const summary = [
      `load: ${skipped.read} reads and ${skipped.write} writes skipped (pool full); ${accepted} commands accepted (${ids.length} command rows, all applied once), ${reads.length} reads (${reads.filter((a) => served(a.status)).length} served), over ${(now() / 1000).toFixed(1)} s`,
      `Kafka consumers rebuilt by the stall watchdog (runtime/kafka-bus.ts): ${umw.count("Kafka consumer stalled")}`,
      `subscribers: ${subscribers.map((s) => `${s.resumes} resumes, ${s.resets} resets (${describeCounts(s.endings)})`).join("; ")}; silent gaps: 0`,
    ];
    for (const line of [...table, ...summary]) t.diagnostic(line);
    console.log(`faults under load:\n${table.join("\n")}\n${summary.join("\n")}`);
  });
});
