import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Kafka, logLevel } from "kafkajs";
import { freePort } from "./ports.js";
import { waitFor } from "./wait.js";

const run = promisify(execFile);
/** The jars scripts/infra.sh fetches (`scripts/infra.sh up` or `scripts/infra.sh up kafka`). */
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const KAFKA_LIBS = process.env.UMW_KAFKA_LIBS ?? resolve(ROOT, process.env.UMW_INFRA_DIR ?? ".data", "kafka", "libs");

/**
 * A single-node KRaft Kafka broker of one test's own, in a temporary folder on free ports, from
 * the jars scripts/infra.sh installs: for tests that restart the broker (the shared one on :19092
 * is never touched). Configured as infra.sh configures the shared one, with a plaintext client
 * listener (no SASL: umw runs with `UMW_KAFKA_SASL_MECHANISM=none` against it).
 */
export interface PrivateKafka {
  /** `127.0.0.1:<port>`. */
  readonly broker: string;
  /** SIGTERM (controlled shutdown) and wait for the exit; topics and offsets stay on disk. */
  stop(): Promise<void>;
  /** Starts it again on the same ports and waits until it answers a metadata request. */
  start(): Promise<void>;
  /** Stops the broker (SIGKILL) and removes its folder. */
  destroy(): Promise<void>;
}

export async function startPrivateKafka(): Promise<PrivateKafka> {
  if (!existsSync(KAFKA_LIBS)) throw new Error(`no Kafka jars in ${KAFKA_LIBS}: run scripts/infra.sh up kafka`);
  const dir = mkdtempSync(join(tmpdir(), "umw-kafka-"));
  const [port, controllerPort] = [await freePort(), await freePort()];
  const broker = `127.0.0.1:${port}`;
  const properties = join(dir, "server.properties");
  const log4j = join(dir, "log4j.properties");
  const log = join(dir, "server.log");
  writeFileSync(
    properties,
    [
      "process.roles=broker,controller",
      "node.id=1",
      `controller.quorum.voters=1@127.0.0.1:${controllerPort}`,
      `listeners=PLAINTEXT://${broker},CONTROLLER://127.0.0.1:${controllerPort}`,
      `advertised.listeners=PLAINTEXT://${broker}`,
      "inter.broker.listener.name=PLAINTEXT",
      "controller.listener.names=CONTROLLER",
      "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
      `log.dirs=${join(dir, "logs")}`,
      "num.partitions=3",
      "default.replication.factor=1",
      "offsets.topic.replication.factor=1",
      "offsets.topic.num.partitions=3",
      "transaction.state.log.replication.factor=1",
      "transaction.state.log.min.isr=1",
      "transaction.state.log.num.partitions=3",
      "group.initial.rebalance.delay.ms=0",
      "auto.create.topics.enable=false",
      "min.insync.replicas=1",
      "delete.topic.enable=true",
    ].join("\n") + "\n",
  );
  writeFileSync(
    log4j,
    [
      "log4j.rootLogger=INFO, file",
      "log4j.appender.file=org.apache.log4j.FileAppender",
      `log4j.appender.file.File=${log}`,
      "log4j.appender.file.layout=org.apache.log4j.PatternLayout",
      "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n",
      "log4j.logger.kafka.request.logger=WARN",
      "log4j.logger.org.apache.kafka.clients=WARN",
      "log4j.logger.state.change.logger=WARN",
    ].join("\n") + "\n",
  );
  const classpath = `${KAFKA_LIBS}/*`;
  // A cluster id is a base64url UUID (22 characters): made here rather than by another JVM start.
  const clusterId = randomBytes(16).toString("base64url");
  await run("java", ["-cp", classpath, `-Dlog4j.configuration=file:${log4j}`, "kafka.tools.StorageTool", "format", "-t", clusterId, "-c", properties]);

  let child: ChildProcess | undefined;
  const answers = async () => {
    const admin = new Kafka({ clientId: "umw-test-private-kafka", brokers: [broker], logLevel: logLevel.NOTHING, connectionTimeout: 1_000, retry: { retries: 0 } }).admin();
    try {
      await admin.connect();
      await admin.listTopics();
      return true;
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
  };
  const start = async () => {
    child = spawn(
      "java",
      ["-Xms128m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true", `-Dlog4j.configuration=file:${log4j}`, `-Dkafka.logs.dir=${dir}`, "-cp", classpath, "kafka.Kafka", properties],
      { stdio: "ignore" },
    );
    const exited = once(child, "exit");
    await Promise.race([
      waitFor(answers, { what: `private kafka on ${broker}`, timeoutMs: 90_000, everyMs: 100, tolerateErrors: true }),
      exited.then(() => Promise.reject(new Error(`kafka exited at start:\n${readFileSync(log, "utf8").slice(-3_000)}`))),
    ]);
  };
  const stop = async (signal: NodeJS.Signals = "SIGTERM") => {
    const running = child;
    if (!running || running.exitCode !== null || running.signalCode !== null) return;
    const exited = once(running, "exit");
    running.kill(signal);
    const timer = setTimeout(() => running.kill("SIGKILL"), 30_000);
    await exited;
    clearTimeout(timer);
  };
  await start();
  let destroyed = false;
  return {
    broker,
    stop: () => stop(),
    start,
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      await stop("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
