// Child process of bench/write.ts: a closed-loop load generator on its own event loop (a Node gRPC
// client saturates before the server does, so the load is spread over processes).
// Answers the parent over IPC:
//   {cmd: "accept", load}: CreateEntity calls, each with a new idempotency key (and so a new
//     command and entity): by default over bare node:http2 with the request bytes encoded once and
//     only the idempotency-key header new per call (the cheapest client: what h2load would do if it
//     could vary a header), or through grpc-js (`client: "grpc-js"`, the generated-client cost);
//   {cmd: "pg", load}: single-row INSERTs, each its own transaction (autocommit), through pg.Pool.
// Both report completions inside the measuring window (after the warm-up) and their latencies.
import { randomUUID } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { credentials as grpcCredentials } from "@grpc/grpc-js";
import pg from "pg";
import { CommandService, CreateEntityRequestSchema } from "../../gen/umw/v1/command_pb.js";
import { createClient } from "../../runtime/client.js";
import { RpcError } from "../../runtime/errors.js";
import { clientCredentials, loadIdentity } from "../../runtime/tls.js";
import { GrpcCallError, grpcFrame, RawGrpcClient } from "./write-grpc.js";

export interface AcceptLoad {
  /** host:port of CommandService. */
  readonly address: string;
  /** mTLS as the `cli` identity from this folder; insecure when absent. */
  readonly certsDir?: string;
  readonly tenant: string;
  readonly type: string;
  /** grpc-js: entity ids are `${idPrefix}-${n}` (unique per child); http2: the server assigns them. */
  readonly idPrefix: string;
  readonly client?: "http2" | "grpc-js";
  readonly concurrency: number;
  readonly warmupMs: number;
  readonly durationMs: number;
}

export interface PgLoad {
  readonly url: string;
  readonly table: string;
  readonly connections: number;
  readonly concurrency: number;
  readonly warmupMs: number;
  readonly durationMs: number;
}

export interface LoadDone {
  /** Completions inside the measuring window. */
  readonly ok: number;
  readonly errors: number;
  readonly errorReasons: Record<string, number>;
  readonly windowMs: number;
  /** Latencies (ms) of the calls completed inside the window, sorted. */
  readonly latenciesMs: number[];
  /** process.cpuUsage() over the window, µs. */
  readonly cpuUs: number;
}

/** Runs `call` from `concurrency` loops for warm-up + duration; counts what completes in the window. */
async function closedLoop(concurrency: number, warmupMs: number, durationMs: number, call: (n: number) => Promise<void>): Promise<LoadDone> {
  const started = performance.now();
  const windowStart = started + warmupMs;
  const windowEnd = windowStart + durationMs;
  let ok = 0;
  let errors = 0;
  let n = 0;
  const errorReasons: Record<string, number> = {};
  const latencies: number[] = [];
  let cpuAtStart: NodeJS.CpuUsage | undefined;
  const cpuTimer = setTimeout(() => (cpuAtStart = process.cpuUsage()), warmupMs);
  const worker = async () => {
    while (performance.now() < windowEnd) {
      const sent = performance.now();
      try {
        await call(n++);
        const done = performance.now();
        if (sent >= windowStart && done <= windowEnd) {
          ok++;
          latencies.push(done - sent);
        }
      } catch (error) {
        errors++;
        const reason = error instanceof RpcError ? error.reason : error instanceof GrpcCallError ? `grpc-status ${error.code}` : ((error as Error).message ?? String(error)).slice(0, 80);
        errorReasons[reason] = (errorReasons[reason] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  clearTimeout(cpuTimer);
  const cpu = process.cpuUsage(cpuAtStart);
  latencies.sort((a, b) => a - b);
  return { ok, errors, errorReasons, windowMs: durationMs, latenciesMs: latencies, cpuUs: cpu.user + cpu.system };
}

async function acceptLoadHttp2(load: AcceptLoad): Promise<LoadDone> {
  const client = new RawGrpcClient(load.address, load.certsDir);
  // Every call the same bytes (the server assigns the entity id); only the idempotency key is new.
  const frame = grpcFrame(toBinary(CreateEntityRequestSchema, create(CreateEntityRequestSchema, { tenant: load.tenant, type: load.type, data: { title: "bench item", n: 1 } })));
  const path = `/${CommandService.typeName}/${CommandService.method.createEntity.name}`;
  const call = async () => {
    await client.unary(path, frame, { "idempotency-key": randomUUID() });
  };
  try {
    await call();
    return await closedLoop(load.concurrency, load.warmupMs, load.durationMs, call);
  } finally {
    client.close();
  }
}

async function acceptLoad(load: AcceptLoad): Promise<LoadDone> {
  if ((load.client ?? "http2") === "http2") return acceptLoadHttp2(load);
  const creds = load.certsDir ? clientCredentials(loadIdentity(load.certsDir, "cli")) : grpcCredentials.createInsecure();
  const client = createClient(CommandService, load.address, creds);
  try {
    // One call first: the channel is connected before the clock starts.
    await client.createEntity({ tenant: load.tenant, type: load.type, id: `${load.idPrefix}-warm`, data: { title: "warm", n: 0 } }, { headers: { "idempotency-key": randomUUID() } });
    return await closedLoop(load.concurrency, load.warmupMs, load.durationMs, async (n) => {
      await client.createEntity(
        { tenant: load.tenant, type: load.type, id: `${load.idPrefix}-${n}`, data: { title: `bench item ${n}`, n } },
        { headers: { "idempotency-key": randomUUID() }, timeoutMs: 10_000 },
      );
    });
  } finally {
    client.close();
  }
}

async function pgLoad(load: PgLoad): Promise<LoadDone> {
  const pool = new pg.Pool({ connectionString: load.url, max: load.connections, application_name: "umw-bench-write-floor" });
  pool.on("error", () => undefined);
  try {
    // Open every connection before the clock starts.
    const clients = await Promise.all(Array.from({ length: load.connections }, () => pool.connect()));
    for (const client of clients) client.release();
    const payload = Buffer.alloc(160, 7);
    const text = `INSERT INTO ${load.table} (id, tenant, key, payload) VALUES ($1, $2, $3, $4)`;
    return await closedLoop(load.concurrency, load.warmupMs, load.durationMs, async () => {
      // A named prepared statement, as CommandService's accept is: parsed and planned once per connection.
      await pool.query({ name: "bench_floor_insert", text, values: [randomUUID(), "bench", randomUUID(), payload] });
    });
  } finally {
    await pool.end();
  }
}

type Message = { id: number; cmd: "accept"; load: AcceptLoad } | { id: number; cmd: "pg"; load: PgLoad };

process.on("message", (message: Message) => {
  const run = message.cmd === "accept" ? acceptLoad(message.load) : pgLoad(message.load);
  run.then(
    (result) => process.send!({ id: message.id, ok: true, result }),
    (error: unknown) => process.send!({ id: message.id, ok: false, error: String((error as Error)?.stack ?? error) }),
  );
});
process.on("disconnect", () => process.exit(0));
