// Child process of the fan-out bench: one RealtimeService hub (startRealtimeHub on the real Kafka and
// Postgres, mTLS) on an event loop of its own, so that its RSS is its own. Commands from the parent:
//   start {brokers, topic, pgUrl, certsDir, limits, group} → {address}
//   memory → process.memoryUsage() after two full GCs (run with --expose-gc)
//   stats  → hub.stats() plus CPU and event-loop delay since the last "mark"
//   mark   → starts a CPU / event-loop window
//   stop
import { monitorEventLoopDelay } from "node:perf_hooks";
import { pino } from "pino";
import { KafkaBus } from "../../runtime/kafka-bus.js";
import { connectPostgres, type Database } from "../../runtime/sql.js";
import { loadIdentity, serverCredentials } from "../../runtime/tls.js";
import { postgresSnapshotSource, startRealtimeHub, type RealtimeLimits, type RunningRealtimeHub } from "../../services/realtime/index.js";
import { serveParent } from "./fanout-ipc.js";
import { infra } from "../../test/support/env.js";

export interface HubStart {
  readonly brokers: readonly string[];
  readonly topic: string;
  readonly group: string;
  readonly pgUrl: string;
  readonly certsDir: string;
  readonly limits: Partial<RealtimeLimits>;
}

export interface HubWindow {
  /** Share of one core used by the hub process since "mark", in percent. */
  readonly cpuPercent: number;
  /** CPU time (user + system) the hub process used since "mark", µs. */
  readonly cpuUs: number;
  readonly windowMs: number;
  readonly loopDelayP50Ms: number;
  readonly loopDelayP99Ms: number;
  readonly loopDelayMaxMs: number;
}

const log = pino({ level: process.env.BENCH_LOG ?? "warn" });
let running: RunningRealtimeHub | undefined;
let bus: KafkaBus | undefined;
let db: Database | undefined;
const loop = monitorEventLoopDelay({ resolution: 10 });
let mark = { cpu: process.cpuUsage(), at: performance.now() };

function fullGc(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error("run the hub child with --expose-gc");
  gc();
  gc();
}

serveParent({
  async start(args: HubStart) {
    bus = new KafkaBus({ sasl: infra.kafkaSasl, brokers: args.brokers, clientId: `umw-bench-fanout-hub-${process.pid}`, log });
    await bus.connect();
    db = await connectPostgres({ url: args.pgUrl, role: "primary", log, max: 5 });
    const certs = loadIdentity(args.certsDir, "realtime");
    running = await startRealtimeHub({
      bus,
      topic: args.topic,
      snapshots: postgresSnapshotSource(db),
      limits: args.limits,
      credentials: serverCredentials(certs),
      log,
      group: args.group,
      // A fresh topic: from the beginning closes the gap between joining the group and the first fetch.
      fromBeginning: true,
      trustedPeers: ["edge"],
    });
    loop.enable();
    return { address: running.address };
  },
  memory() {
    fullGc();
    return process.memoryUsage();
  },
  mark() {
    loop.reset();
    mark = { cpu: process.cpuUsage(), at: performance.now() };
    return {};
  },
  stats() {
    const cpu = process.cpuUsage(mark.cpu);
    const elapsedUs = (performance.now() - mark.at) * 1000;
    const window: HubWindow = {
      cpuPercent: Math.round(((cpu.user + cpu.system) / elapsedUs) * 100),
      cpuUs: cpu.user + cpu.system,
      windowMs: Math.round(elapsedUs / 1000),
      loopDelayP50Ms: Math.round(loop.percentile(50) / 1e4) / 100,
      loopDelayP99Ms: Math.round(loop.percentile(99) / 1e4) / 100,
      loopDelayMaxMs: Math.round(loop.max / 1e4) / 100,
    };
    return { hub: running!.stats(), window };
  },
  async stop() {
    loop.disable();
    await running?.stop().catch(() => undefined);
    await bus?.close().catch(() => undefined);
    await db?.close().catch(() => undefined);
    return {};
  },
});
