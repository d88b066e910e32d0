// Child process of the fan-out bench: the baseline, a bare Kafka consumer (the same KafkaBus the hub
// consumes with, its own group) that decodes each DomainEvent and notes publish → consume latency.
//   start {brokers, topic, group} → {}
//   progress → {received, warmups}
//   report → {received, latencies: Float64Array, cpuPercent}
//   stop
import { fromBinary } from "@bufbuild/protobuf";
import { pino } from "pino";
import { DomainEventSchema } from "../../gen/umw/v1/envelope_pb.js";
import type { Subscription } from "../../runtime/bus.js";
import { KafkaBus } from "../../runtime/kafka-bus.js";
import { serveParent } from "./fanout-ipc.js";
import { infra } from "../../test/support/env.js";

const log = pino({ level: process.env.BENCH_LOG ?? "warn" });
const wallNow = () => performance.timeOrigin + performance.now();
let bus: KafkaBus | undefined;
let subscription: Subscription | undefined;
let latencies = new Float64Array(1 << 16);
let received = 0;
let warmups = 0;
let mark = { cpu: process.cpuUsage(), at: performance.now() };

serveParent({
  async start(args: { brokers: string[]; topic: string; group: string }) {
    bus = new KafkaBus({ sasl: infra.kafkaSasl, brokers: args.brokers, clientId: `umw-bench-fanout-baseline-${process.pid}`, log });
    await bus.connect();
    subscription = await bus.subscribe({
      topics: [args.topic],
      group: args.group,
      fromBeginning: true,
      handle: async (message) => {
        const at = wallNow();
        const event = fromBinary(DomainEventSchema, message.value);
        const data = event.entity?.data;
        if (data?.warmup === true) {
          warmups++;
          return;
        }
        const publishedAt = data?.publishedAt;
        if (typeof publishedAt !== "number") return;
        if (received === latencies.length) {
          const grown = new Float64Array(latencies.length * 2);
          grown.set(latencies);
          latencies = grown;
        }
        latencies[received++] = at - publishedAt;
      },
    });
    return {};
  },
  mark() {
    mark = { cpu: process.cpuUsage(), at: performance.now() };
    return {};
  },
  progress() {
    return { received, warmups };
  },
  report() {
    const cpu = process.cpuUsage(mark.cpu);
    return {
      received,
      latencies: latencies.slice(0, received),
      cpuPercent: Math.round(((cpu.user + cpu.system) / ((performance.now() - mark.at) * 1000)) * 100),
    };
  },
  async stop() {
    await subscription?.stop().catch(() => undefined);
    await bus?.close().catch(() => undefined);
    return {};
  },
});
