// npm run bench:write — the write path, against the real Postgres primary, Kafka and Redis, every
// umw service a `umw serve <name>` child process as deployed (mTLS between them).
//
// 1. accept: CommandService CreateEntity accepts per second with many concurrent callers, each call
//    with its own idempotency key. h2load cannot vary a header per request (and a repeated key is a
//    replay, not a write), so the load comes from a bare node:http2 gRPC client (mTLS as `cli`; the
//    request bytes encoded once, only the key new per call) in BENCH_ACCEPT_PROCS child processes of
//    BENCH_ACCEPT_CONCURRENCY calls in flight each (BENCH_ACCEPT_CLIENT=grpc-js: generated clients). Its
//    floor, in the same run with the same processes and concurrency: raw single-row INSERTs through
//    pg, each its own transaction (autocommit: INSERT + COMMIT in one round trip), over as many
//    connections as CommandService's pool (20). Rounds alternate floor/accept; the best of each counts.
// 2. visible: the relay, the processor and the cache updater join; at a fixed BENCH_RATE commands/s
//    (half creates, half updates of entities whose previous write is visible), the time from the
//    accept to the new version being in Redis, on server-side clocks: the accept statement's now()
//    to the cache updater's clock at its write (the entry's loadedAt). Redis keyspace notifications
//    tell the bench of each write as it lands (no polling; see lib/write-visibility.ts); the outbox's
//    published_at and the processor's transaction time split the path into stages.
//
// Writes bench/results/write.json. Bounded: about 2 minutes, hard stop at BENCH_MAX_S (default 240 s).
// Knobs (environment): BENCH_ACCEPT_PROCS (2), BENCH_ACCEPT_CONCURRENCY (64 per process),
// BENCH_ACCEPT_S (5), BENCH_ACCEPT_WARMUP_S (1), BENCH_ACCEPT_ROUNDS (2), BENCH_RATE (300),
// BENCH_ACCEPT_CLIENT (http2), BENCH_VISIBLE_S (20), BENCH_VISIBLE_WARMUP_S (3), BENCH_PARTITIONS (6),
// BENCH_PROCESSORS (1),
// BENCH_PHASES (accept,visible), BENCH_CPU_PROF=dir (V8
// CPU profiles of every umw process), BENCH_LOG (log level of the umw processes, default info),
// BENCH_TRACING (off; a sampling ratio, or several variants compared in one run: off,0.1,1 — see
// bench/lib/tracing.ts).
import { randomBytes, randomUUID } from "node:crypto";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import pg from "pg";
import { CommandService, CreateEntityRequestSchema, CreateEntityResponseSchema, UpdateEntityRequestSchema } from "../gen/umw/v1/command_pb.js";
import { DomainEventSchema } from "../gen/umw/v1/envelope_pb.js";
import { topicNames } from "../runtime/topics.js";
import { cacheKey } from "../runtime/cache/keys.js";
import { MESH_IDENTITIES } from "../services/registry.js";
import { createTestDatabase, type TestDatabase } from "../test/support/database.js";
import { testCerts, type TestCerts } from "../test/support/certs.js";
import { infra } from "../test/support/env.js";
import { freePort } from "../test/support/ports.js";
import { dropKafkaPrefix } from "../test/processor/support.js";
import { LoadProcess, UmwProcess } from "./lib/write-children.js";
import type { LoadDone } from "./lib/write-load.js";
import { GrpcCallError, grpcFrame, RawGrpcClient } from "./lib/write-grpc.js";
import { VisibilityWatch } from "./lib/write-visibility.js";
import { resultsPath, runTracingVariants, tracingEnv } from "./lib/tracing.js";

const env = (name: string, fallback: number) => (process.env[name] ? Number(process.env[name]) : fallback);
const ACCEPT_PROCS = env("BENCH_ACCEPT_PROCS", 2);
const ACCEPT_CONCURRENCY = env("BENCH_ACCEPT_CONCURRENCY", 64);
const ACCEPT_S = env("BENCH_ACCEPT_S", 5);
const ACCEPT_WARMUP_S = env("BENCH_ACCEPT_WARMUP_S", 1);
const ACCEPT_ROUNDS = env("BENCH_ACCEPT_ROUNDS", 2);
const ACCEPT_CLIENT = process.env.BENCH_ACCEPT_CLIENT === "grpc-js" ? "grpc-js" : "http2";
/** CommandService's pool size (services/command/index.ts): the floor gets as many connections. */
const PG_CONNECTIONS = 20;
const RATE = env("BENCH_RATE", 300);
const VISIBLE_S = env("BENCH_VISIBLE_S", 20);
const VISIBLE_WARMUP_S = env("BENCH_VISIBLE_WARMUP_S", 3);
const PARTITIONS = env("BENCH_PARTITIONS", 6);
/** Processor instances (one consumer group: the partitions are shared among them). */
const PROCESSORS = env("BENCH_PROCESSORS", 1);
const MAX_S = env("BENCH_MAX_S", 240);
const CPU_PROF = process.env.BENCH_CPU_PROF;
/** Which phases run (both by default): "accept", "visible". */
const PHASES = new Set((process.env.BENCH_PHASES ?? "accept,visible").split(",").map((phase) => phase.trim()));

const TENANT = "bench";
const TYPE = "item";
const FLOOR_TABLE = "bench_write_floor";
const RESULTS = resultsPath(join(dirname(fileURLToPath(import.meta.url)), "results"), "write");
const TARGETS = { ratio_accept_to_pg: { min: 0.5 }, visible_p50_ms: { max: 20 }, visible_p99_ms: { max: 100 } } as const;
const RESOURCES = {
  [TYPE]: {
    schema: {
      type: "object",
      required: ["title"],
      additionalProperties: false,
      properties: { title: { type: "string", minLength: 1, maxLength: 200 }, n: { type: "integer" } },
    },
  },
};

const began = performance.now();
const elapsed = () => `${((performance.now() - began) / 1000).toFixed(1)}s`.padStart(6);
const loadSamples: { phase: string; load1: number; load5: number }[] = [];
function progress(phase: string, message: string): void {
  const [one, five] = os.loadavg();
  loadSamples.push({ phase, load1: round2(one!), load5: round2(five!) });
  console.log(`[${elapsed()}] ${phase.padEnd(9)} ${message}  (load ${one!.toFixed(2)})`);
}
/** Host CPU time taken from this VM (steal) and this VM's own idle share, since `since` (/proc/stat). */
function cpuShares(since?: number[]): { snapshot: number[]; steal_percent?: number; idle_percent?: number } {
  let snapshot: number[] = [];
  try {
    snapshot = readFileSync("/proc/stat", "utf8").split("\n")[0]!.split(/\s+/).slice(1).map(Number);
  } catch {
    return { snapshot };
  }
  if (!since || since.length === 0) return { snapshot };
  const delta = snapshot.map((value, i) => value - (since[i] ?? 0));
  const total = delta.reduce((sum, value) => sum + value, 0) || 1;
  return { snapshot, steal_percent: Math.round((delta[7]! / total) * 100), idle_percent: Math.round((delta[3]! / total) * 100) };
}
const round1 = (value: number) => Math.round(value * 10) / 10;
const round2 = (value: number) => Math.round(value * 100) / 100;

/** The q-quantile of sorted values (nearest rank); Infinity entries stand for never-seen. */
function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}
const ms = (value: number) => (Number.isFinite(value) ? round1(value) : null);

const children: UmwProcess[] = [];
const loaders: LoadProcess[] = [];
let db: TestDatabase | undefined;
let certs: TestCerts | undefined;
let admin: pg.Client | undefined;
let watch: VisibilityWatch | undefined;
let client: RawGrpcClient | undefined;
const prefix = `bw${randomBytes(4).toString("hex")}.`;

async function serve(names: string[], extra: NodeJS.ProcessEnv, common: NodeJS.ProcessEnv): Promise<UmwProcess> {
  const cpuProfDir = CPU_PROF ? join(CPU_PROF, names.join("+")) : undefined;
  if (cpuProfDir) mkdirSync(cpuProfDir, { recursive: true });
  const child = await UmwProcess.start(names, { ...common, ...extra }, { cpuProfDir });
  children.push(child);
  return child;
}

interface Aggregate {
  readonly rps: number;
  readonly ok: number;
  readonly errors: number;
  readonly errorReasons: Record<string, number>;
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
  /** CPU of the load generators, % of one core (summed). */
  readonly loaderCpu: number;
}

function aggregate(results: readonly LoadDone[]): Aggregate {
  const windowS = results[0]!.windowMs / 1000;
  const latencies = results.flatMap((result) => result.latenciesMs).sort((a, b) => a - b);
  const errorReasons: Record<string, number> = {};
  for (const result of results) for (const [reason, count] of Object.entries(result.errorReasons)) errorReasons[reason] = (errorReasons[reason] ?? 0) + count;
  const ok = results.reduce((sum, result) => sum + result.ok, 0);
  return {
    rps: Math.round(ok / windowS),
    ok,
    errors: results.reduce((sum, result) => sum + result.errors, 0),
    errorReasons,
    p50Ms: ms(quantile(latencies, 0.5)),
    p99Ms: ms(quantile(latencies, 0.99)),
    loaderCpu: Math.round(results.reduce((sum, result) => sum + result.cpuUs, 0) / 10 / results[0]!.windowMs),
  };
}

interface Sample {
  readonly kind: "create" | "update";
  /** performance.now() in this process: the call sent, its receipt received, the write seen. */
  readonly sentAt: number;
  acceptedAt?: number;
  seenAt?: number;
  commandId?: string;
  /** ms since the epoch, server side: accept statement, processor transaction, cache write. */
  acceptedMs?: number;
  appliedMs?: number;
  writtenAt?: number;
  /** The version seen is the one written (not a later one). */
  exact?: boolean;
  how?: "notified" | "swept";
  error?: string;
}

async function main(): Promise<void> {
  mkdirSync(dirname(RESULTS), { recursive: true });
  const loadBefore = os.loadavg().map(round2);
  progress("setup", `database, certificates, CommandService; prefix ${prefix}`);
  db = await createTestDatabase();
  certs = testCerts(MESH_IDENTITIES);
  admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
  await admin.query(`CREATE TABLE ${FLOOR_TABLE} (id uuid PRIMARY KEY, tenant text NOT NULL, key text NOT NULL, payload bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`);

  const commandPort = await freePort();
  const common: NodeJS.ProcessEnv = {
    UMW_PG_URL: db.url,
    UMW_PG_REPLICA_URL: db.replicaUrl,
    UMW_REDIS_URL: infra.redisUrl,
    UMW_KAFKA_BROKERS: infra.kafkaBrokers.join(","),
    UMW_TOPIC_PREFIX: prefix,
    UMW_CACHE_KEY_PREFIX: prefix,
    UMW_TOPIC_PARTITIONS: String(PARTITIONS),
    UMW_CERTS_DIR: certs.dir,
    UMW_CONFIG: "",
    UMW_RESOURCES: JSON.stringify(RESOURCES),
    UMW_LOG_LEVEL: process.env.BENCH_LOG ?? "info",
    UMW_COMMAND_PORT: String(commandPort),
    UMW_METRICS_PORT: "0",
    ...tracingEnv(),
  };
  const command = await serve(["command"], {}, common);
  const address = `127.0.0.1:${commandPort}`;
  for (let i = 0; i < ACCEPT_PROCS; i++) loaders.push(LoadProcess.start());

  // ---- 1. accept_rps and its floor ------------------------------------------------------------
  const rounds: { round: number; pg: Aggregate; accept: Aggregate & { commandCpu: number }; ratio: number; load1: number }[] = [];
  const timing = { warmupMs: ACCEPT_WARMUP_S * 1000, durationMs: ACCEPT_S * 1000 };
  const acceptShares = cpuShares();
  for (let round = 1; PHASES.has("accept") && round <= ACCEPT_ROUNDS; round++) {
    const floor = aggregate(
      await Promise.all(loaders.map((loader) => loader.pg({ url: db!.url, table: FLOOR_TABLE, connections: Math.max(1, Math.round(PG_CONNECTIONS / ACCEPT_PROCS)), concurrency: ACCEPT_CONCURRENCY, ...timing }))),
    );
    progress("pg-floor", `round ${round}: ${floor.rps} INSERT+COMMIT/s, p50 ${floor.p50Ms} ms, p99 ${floor.p99Ms} ms, errors ${floor.errors}, loaders ${floor.loaderCpu}% cpu`);
    command.markCpu();
    const accepted = aggregate(
      await Promise.all(
        loaders.map((loader, i) =>
          loader.accept({ address, certsDir: certs!.dir, client: ACCEPT_CLIENT, tenant: TENANT, type: TYPE, idPrefix: `r${round}p${i}`, concurrency: ACCEPT_CONCURRENCY, ...timing }),
        ),
      ),
    );
    const commandCpu = command.cpuSince();
    const ratio = round2(accepted.rps / floor.rps);
    rounds.push({ round, pg: floor, accept: { ...accepted, commandCpu }, ratio, load1: round2(os.loadavg()[0]!) });
    progress(
      "accept",
      `round ${round}: ${accepted.rps} accepts/s, p50 ${accepted.p50Ms} ms, p99 ${accepted.p99Ms} ms, errors ${accepted.errors}${accepted.errors ? ` ${JSON.stringify(accepted.errorReasons)}` : ""}, command ${commandCpu}% cpu, loaders ${accepted.loaderCpu}% cpu; ratio ${ratio}`,
    );
  }
  for (const loader of loaders.splice(0)) loader.stop();
  const acceptCpu = cpuShares(acceptShares.snapshot);
  const acceptRps = rounds.length ? Math.max(...rounds.map((r) => r.accept.rps)) : null;
  const pgRps = rounds.length ? Math.max(...rounds.map((r) => r.pg.rps)) : null;
  const ratio = acceptRps !== null && pgRps !== null ? round2(acceptRps / pgRps) : null;
  // The accepted commands and the floor's rows are not the next phase's business.
  await admin.query(`TRUNCATE umw_outbox, umw_commands, umw_idempotency_keys, ${FLOOR_TABLE}`);

  // ---- 2. accept → cache-visible at a fixed rate -------------------------------------------------
  const visible = PHASES.has("visible") ? await measureVisible() : undefined;

  async function measureVisible() {
    progress("pipeline", "starting relay, processor, cache-updater");
    const [relay, updater, ...processors] = await Promise.all([
      serve(["relay"], { UMW_RELAY_PORT: String(await freePort()) }, common),
      serve(["cache-updater"], { UMW_CACHE_UPDATER_PORT: String(await freePort()) }, common),
      ...Array.from({ length: PROCESSORS }, async () => serve(["processor"], { UMW_PROCESSOR_PORT: String(await freePort()) }, common)),
    ]);
    watch = await VisibilityWatch.start(infra.redisUrl, prefix);
    client = new RawGrpcClient(address, certs!.dir);
    const createPath = `/${CommandService.typeName}/${CommandService.method.createEntity.name}`;
    const updatePath = `/${CommandService.typeName}/${CommandService.method.updateEntity.name}`;

    /** Entities whose last write is visible: the updates' candidates (an entry is never overwritten before it is read). */
    const idle: { id: string; version: bigint }[] = [];
    let created = 0;
    const issue = (samples: Sample[] | undefined): Promise<void> => {
      const update = idle.length > 0 && Math.random() < 0.5;
      const target = update ? idle.splice(Math.floor(Math.random() * idle.length), 1)[0]! : { id: `v-${created++}`, version: 0n };
      const version = target.version + 1n;
      const sample: Sample = { kind: update ? "update" : "create", sentAt: performance.now() };
      samples?.push(sample);
      const visible = watch!.expect(cacheKey(prefix, TENANT, TYPE, target.id).entry, version);
      const headers = { "idempotency-key": randomUUID() };
      const data = { title: `item ${target.id} v${version}`, n: Number(version) };
      const call = update
        ? client!.unary(updatePath, grpcFrame(toBinary(UpdateEntityRequestSchema, create(UpdateEntityRequestSchema, { tenant: TENANT, type: TYPE, id: target.id, data, expectedVersion: target.version }))), headers)
        : client!.unary(createPath, grpcFrame(toBinary(CreateEntityRequestSchema, create(CreateEntityRequestSchema, { tenant: TENANT, type: TYPE, id: target.id, data }))), headers);
      return call.then(
        async (bytes) => {
          sample.acceptedAt = performance.now();
          // CreateEntityResponse and UpdateEntityResponse both carry the receipt as field 1.
          sample.commandId = fromBinary(CreateEntityResponseSchema, bytes).receipt!.commandId;
          const seen = await visible;
          sample.seenAt = seen.at;
          sample.writtenAt = seen.writtenAt;
          sample.how = seen.how;
          sample.exact = seen.version === version;
          idle.push({ id: target.id, version });
        },
        (error: unknown) => {
          sample.error = error instanceof GrpcCallError ? `grpc-status ${error.code}` : String(error);
        },
      );
    };

    /** Open loop: `rate` commands a second whatever the answers do, for `seconds`. */
    async function drive(rate: number, seconds: number, samples: Sample[] | undefined): Promise<Promise<void>[]> {
      const started = performance.now();
      const calls: Promise<void>[] = [];
      let sent = 0;
      while (performance.now() - started < seconds * 1000) {
        const due = Math.floor(((performance.now() - started) / 1000) * rate);
        while (sent < due) {
          calls.push(issue(samples));
          sent++;
        }
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      return calls;
    }

    const settle = async (calls: Promise<void>[], graceMs: number) => {
      await Promise.race([Promise.all(calls), new Promise((resolve) => setTimeout(resolve, graceMs))]);
    };

    progress("warm-up", `${RATE} commands/s for ${VISIBLE_WARMUP_S} s (consumer groups join, connections open)`);
    await settle(await drive(RATE, VISIBLE_WARMUP_S, undefined), 30_000);
    const pipeline = [command, relay, ...processors, updater];
    for (const child of pipeline) child.markCpu();
    const samples: Sample[] = [];
    const visibleShares = cpuShares();
    const loopDelay = monitorEventLoopDelay({ resolution: 5 });
    loopDelay.enable();
    const benchCpu = process.cpuUsage();
    progress("visible", `${RATE} commands/s for ${VISIBLE_S} s, through command → relay → Kafka → processor → relay → Kafka → cache-updater → Redis`);
    const measureStart = performance.now();
    const calls = await drive(RATE, VISIBLE_S, samples);
    const driveS = (performance.now() - measureStart) / 1000;
    const visibleCpu = cpuShares(visibleShares.snapshot);
    const cpu = Object.fromEntries(pipeline.map((child, i) => [child.name === "processor" && PROCESSORS > 1 ? `processor${i - 1}` : child.name, child.cpuSince()]));
    await settle(calls, 15_000);
    loopDelay.disable();
    const benchCpuUsage = process.cpuUsage(benchCpu);

    // Server-side times (ms since the epoch, one clock: every process runs on this machine): the
    // accept statement's now() (umw_commands.create_time; the commit and the receipt follow within
    // the statement's duration), the processor transaction's now() (update_time), the Kafka
    // timestamps, and the cache updater's clock when it wrote the entry.
    const accepted = samples.filter((sample) => sample.acceptedAt !== undefined);
    const { rows } = await admin!.query<{ id: string; created_ms: number; updated_ms: number; state: string }>(
      `SELECT id::text AS id, extract(epoch FROM create_time) * 1000 AS created_ms, extract(epoch FROM update_time) * 1000 AS updated_ms, state
         FROM umw_commands WHERE id = ANY($1::uuid[])`,
      [accepted.map((sample) => sample.commandId!)],
    );
    const byId = new Map(rows.map((row) => [row.id, { created: Number(row.created_ms), updated: Number(row.updated_ms), state: row.state }]));
    for (const sample of accepted) {
      const row = byId.get(sample.commandId!);
      sample.acceptedMs = row?.created;
      sample.appliedMs = row?.state === "applied" ? row.updated : undefined;
    }
    // When the relay marked each command and each domain event published (after the broker's ack).
    const commandSent = new Map<string, number>();
    const eventSent = new Map<string, number>();
    const outbox = await admin!.query<{ id: string; topic: string; published_ms: number | null; payload: Buffer }>(
      `SELECT id::text AS id, topic, extract(epoch FROM published_at) * 1000 AS published_ms, payload FROM umw_outbox`,
    );
    const topics = topicNames({ topicPrefix: prefix });
    for (const row of outbox.rows) {
      if (row.published_ms === null) continue;
      if (row.topic === topics.commands) commandSent.set(row.id, Number(row.published_ms));
      else eventSent.set(fromBinary(DomainEventSchema, row.payload).commandId, Number(row.published_ms));
    }
    const failed = samples.filter((sample) => sample.error !== undefined);
    const sorted = (values: number[]) => values.sort((a, b) => a - b);
    const visibleMs = sorted(accepted.map((sample) => (sample.writtenAt === undefined || sample.acceptedMs === undefined ? Infinity : sample.writtenAt - sample.acceptedMs)));
    const clientVisibleMs = sorted(accepted.map((sample) => (sample.seenAt === undefined ? Infinity : Math.max(0, sample.seenAt - sample.acceptedAt!))));
    const acceptMs = sorted(accepted.map((sample) => sample.acceptedAt! - sample.sentAt));
    const appliedMs = sorted(accepted.map((sample) => (sample.appliedMs === undefined || sample.acceptedMs === undefined ? Infinity : sample.appliedMs - sample.acceptedMs)));
    const neverVisible = accepted.filter((sample) => sample.writtenAt === undefined).length;
    /** p50/p99 of one stage, from `from` to `to` of each accepted command that has both. */
    const stage = (from: (sample: Sample) => number | undefined, to: (sample: Sample) => number | undefined) => {
      const values = sorted(
        accepted
          .map((sample) => [from(sample), to(sample)] as const)
          .filter((pair): pair is readonly [number, number] => pair[0] !== undefined && pair[1] !== undefined)
          .map(([a, b]) => b - a),
      );
      return { p50_ms: ms(quantile(values, 0.5)), p99_ms: ms(quantile(values, 0.99)), n: values.length };
    };
    const stages = {
      "accept → command published (commit, wake-up, relay round, broker ack, mark)": stage((sample) => sample.acceptedMs, (sample) => commandSent.get(sample.commandId!)),
      "command published → processor transaction starts (consumer fetch, queue)": stage((sample) => commandSent.get(sample.commandId!), (sample) => sample.appliedMs),
      "processor transaction → event published (transaction, wake-up, relay round, ack, mark)": stage((sample) => sample.appliedMs, (sample) => eventSent.get(sample.commandId!)),
      "event published → written to Redis (consumer fetch, decode)": stage((sample) => eventSent.get(sample.commandId!), (sample) => sample.writtenAt),
    };
    const visible = {
      rate_per_s: RATE,
      offered_per_s: round1(samples.length / driveS),
      duration_s: round1(driveS),
      commands: samples.length,
      creates: samples.filter((sample) => sample.kind === "create").length,
      updates: samples.filter((sample) => sample.kind === "update").length,
      accept_errors: failed.length,
      accept_error_reasons: Object.fromEntries([...new Set(failed.map((sample) => sample.error!))].map((reason) => [reason, failed.filter((sample) => sample.error === reason).length])),
      never_visible: neverVisible,
      seen_by_notification: accepted.filter((sample) => sample.how === "notified").length,
      seen_by_sweep: accepted.filter((sample) => sample.how === "swept").length,
      visible_p50_ms: ms(quantile(visibleMs, 0.5)),
      visible_p90_ms: ms(quantile(visibleMs, 0.9)),
      visible_p99_ms: ms(quantile(visibleMs, 0.99)),
      visible_max_ms: ms(visibleMs[visibleMs.length - 1] ?? Number.NaN),
      applied_p50_ms: ms(quantile(appliedMs, 0.5)),
      applied_p99_ms: ms(quantile(appliedMs, 0.99)),
      stages,
      client_accept_p50_ms: ms(quantile(acceptMs, 0.5)),
      client_accept_p99_ms: ms(quantile(acceptMs, 0.99)),
      client_visible_p50_ms: ms(quantile(clientVisibleMs, 0.5)),
      client_visible_p99_ms: ms(quantile(clientVisibleMs, 0.99)),
      vm_cpu: { steal_percent: visibleCpu.steal_percent, idle_percent: visibleCpu.idle_percent },
      cpu_percent_of_one_core: { ...cpu, bench: Math.round((benchCpuUsage.user + benchCpuUsage.system) / 10 / (driveS * 1000)) },
      bench_event_loop_delay_p99_ms: round1(loopDelay.percentile(99) / 1e6),
    };
    progress(
      "visible",
      `${visible.commands} commands (${visible.offered_per_s}/s): accept→visible p50 ${visible.visible_p50_ms} / p99 ${visible.visible_p99_ms} / max ${visible.visible_max_ms} ms; ` +
        `accept→processor tx p50 ${visible.applied_p50_ms} / p99 ${visible.applied_p99_ms} ms; client-side: accept p50 ${visible.client_accept_p50_ms} / p99 ${visible.client_accept_p99_ms} ms, receipt→seen p50 ${visible.client_visible_p50_ms} ms; ` +
        `${neverVisible} never visible, ${failed.length} accept errors; VM steal ${visibleCpu.steal_percent}% idle ${visibleCpu.idle_percent}%; bench loop delay p99 ${visible.bench_event_loop_delay_p99_ms} ms; cpu ${Object.entries(visible.cpu_percent_of_one_core).map(([name, pct]) => `${name} ${pct}%`).join(" ")}`,
    );
    for (const [name, value] of Object.entries(stages)) progress("stage", `${name}: p50 ${value.p50_ms} / p99 ${value.p99_ms} ms (${value.n})`);
    return visible;
  }

  const met = (value: number | null, target: { min?: number; max?: number }) =>
    value !== null && (target.min === undefined || value >= target.min) && (target.max === undefined || value <= target.max);
  const results = {
    benchmark: "write",
    generated_at: new Date().toISOString(),
    command: "npm run bench:write",
    machine: { cpus: os.cpus().length, node: process.version, loadavg_before: loadBefore, loadavg_after: os.loadavg().map(round2) },
    accept_rps: acceptRps,
    pg_insert_commit_rps: pgRps,
    ratio_accept_to_pg: ratio,
    visible_p50_ms: visible?.visible_p50_ms ?? null,
    visible_p99_ms: visible?.visible_p99_ms ?? null,
    targets: {
      ratio_accept_to_pg: { target: `>= ${TARGETS.ratio_accept_to_pg.min}`, value: ratio, met: met(ratio, TARGETS.ratio_accept_to_pg) },
      visible_p50_ms: { target: `<= ${TARGETS.visible_p50_ms.max}`, value: visible?.visible_p50_ms ?? null, met: met(visible?.visible_p50_ms ?? null, TARGETS.visible_p50_ms) },
      visible_p99_ms: { target: `<= ${TARGETS.visible_p99_ms.max}`, value: visible?.visible_p99_ms ?? null, met: met(visible?.visible_p99_ms ?? null, TARGETS.visible_p99_ms) },
    },
    accept: {
      method:
        `CreateEntity over mTLS from ${ACCEPT_PROCS} Node client processes × ${ACCEPT_CONCURRENCY} calls in flight, ${ACCEPT_CLIENT === "http2" ? "a bare node:http2 gRPC client (request bytes encoded once, the entity id assigned by the server)" : "grpc-js generated clients"}; ` +
        "each call a new idempotency key, so a new command (h2load sends one header set for every request, and a repeated key is a replay, not a write); " +
        `CommandService is \`umw serve command\` (pool of ${PG_CONNECTIONS}), the relay/processor/cache updater not running. ` +
        `Floor: the same processes and concurrency doing single-row INSERTs (autocommit, named prepared statement) over ${PG_CONNECTIONS} pg connections. ` +
        `${ACCEPT_ROUNDS} rounds of ${ACCEPT_WARMUP_S} s warm-up + ${ACCEPT_S} s, floor then accept; the best round of each is reported.`,
      vm_cpu: { steal_percent: acceptCpu.steal_percent, idle_percent: acceptCpu.idle_percent },
      rounds,
    },
    visible: {
      method:
        "Open loop at a fixed rate from one bare node:http2 gRPC client (mTLS) in the bench process; half creates, half updates (expected_version) of entities whose previous write is visible. " +
        "accept→visible is measured on server-side clocks, so that it does not depend on how promptly the (CPU-starved) bench process runs: from the accept statement's now() " +
        "(umw_commands.create_time; the commit and the receipt follow within that statement) to the cache updater's clock when it wrote the entry (the entry's loadedAt; Redis holds it one round trip later). " +
        "The bench learns of each write from a Redis keyspace notification (notify-keyspace-events K$, set for the run and restored), reads the entry once and checks its version; " +
        "an entity is updated again only after its previous version was seen, so no entry is overwritten before it is read. A sweep (MGET every 250 ms of keys waited for > 1 s) backs the notifications up. " +
        "Stages: when the relay marked the command and the event published (umw_outbox.published_at, after the broker's ack), and the processor transaction's now() (umw_commands.update_time). " +
        "client_*: the same seen from the bench process (includes its own scheduling delays). Never-visible commands count as infinite.",
      topic_partitions: PARTITIONS,
      processors: PROCESSORS,
      ...visible,
    },
    load: loadSamples,
  };
  writeFileSync(RESULTS, JSON.stringify(results, null, 2) + "\n");

  const line = (name: string, value: unknown, target: string, ok?: boolean) => console.log(`  ${name.padEnd(22)} ${String(value).padStart(10)}   ${target.padEnd(8)} ${ok === undefined ? "" : ok ? "met" : "MISSED"}`);
  console.log(`\nbench:write (load ${loadBefore.join(" ")} → ${os.loadavg().map(round2).join(" ")}) → ${RESULTS}`);
  line("accept_rps", acceptRps, "");
  line("pg_insert_commit_rps", pgRps, "");
  line("ratio_accept_to_pg", ratio, ">= 0.5", results.targets.ratio_accept_to_pg.met);
  line("visible_p50_ms", visible?.visible_p50_ms, "<= 20", results.targets.visible_p50_ms.met);
  line("visible_p99_ms", visible?.visible_p99_ms, "<= 100", results.targets.visible_p99_ms.met);
}

async function cleanup(): Promise<void> {
  for (const loader of loaders.splice(0)) loader.stop();
  client?.close();
  await watch?.close().catch(() => undefined);
  await Promise.all(children.splice(0).map((child) => child.stop().catch(() => child.kill())));
  await admin?.end().catch(() => undefined);
  const { Redis } = await import("ioredis");
  const redis = new Redis(infra.redisUrl, { lazyConnect: true });
  await redis
    .connect()
    .then(async () => {
      let cursor = "0";
      do {
        const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
        cursor = next;
        if (keys.length) await redis.del(...keys);
      } while (cursor !== "0");
    })
    .catch(() => undefined)
    .finally(() => redis.disconnect());
  await db?.drop().catch((error: unknown) => console.error(`bench: cannot drop ${db?.name}: ${(error as Error).message}`));
  await dropKafkaPrefix(prefix).catch(() => undefined);
  certs?.remove();
}

const bound = setTimeout(() => {
  console.error(`bench:write: not done after ${MAX_S} s; stopping`);
  for (const child of children) console.error(`--- ${child.name}\n${child.tail(1_500)}`);
  void cleanup().finally(() => process.exit(2));
}, MAX_S * 1000);
bound.unref();

if (runTracingVariants(fileURLToPath(import.meta.url), "write", (results) => {
  const { accept_rps, pg_insert_commit_rps, ratio_accept_to_pg, visible_p50_ms, visible_p99_ms } = results;
  return { accept_rps, pg_insert_commit_rps, ratio_accept_to_pg, visible_p50_ms, visible_p99_ms };
})) process.exit(0);
main().then(
  () => cleanup().then(() => process.exit(0)),
  (error: unknown) => {
    console.error("bench:write failed:", error);
    for (const child of children) console.error(`--- ${child.name}\n${child.tail(1_500)}`);
    void cleanup().finally(() => process.exit(1));
  },
);
