import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { ConfigError, loadConfig, type Config } from "../runtime/config.js";
import { createDevCertificates } from "../runtime/certs.js";
import { rootLogger } from "../runtime/logger.js";
import { migrate } from "../runtime/migrate.js";
import { redactText } from "../runtime/redact.js";
import { processReadiness } from "../runtime/readiness.js";
import type { RunningService } from "../runtime/service.js";
import { composeRuntime } from "../services/compose.js";
import { collectProcessMetrics, defaultRegistry, gauge, serveMetrics } from "../runtime/metrics.js";
import { declareRefusalMetrics } from "../runtime/refusal-metrics.js";
import { ALL_SERVICES, MESH_IDENTITIES, metricsPortOf, SERVICES } from "../services/registry.js";
import { startTelemetry, telemetryServiceName } from "../runtime/telemetry.js";

const USAGE = `usage: umw <command>

  serve <service...>|all [--embedded]
                           run services in this process (${Object.keys(SERVICES).join(", ")}; all = every one but canary);
                           --embedded (or UMW_EMBEDDED=1): on PGlite, an in-process bus and an
                           in-memory cache instead of Postgres, Kafka and Redis (not durable)
  certs [--force] [--no-loopback]
                           create the dev CA and mesh certificates in UMW_CERTS_DIR (.certs):
                           server (serverAuth) and client (clientAuth) certificates per identity;
                           --no-loopback: server certificates name only their service, not
                           localhost/127.0.0.1 (docs/security.md)
  token --tenant T [--scopes "a b"] [--roles "r"] [--subject S] [--ttl 1h]
                           print a bearer token of the built-in dev issuer (UMW_AUTH_MODE=dev)
  migrate                  apply SQL migrations to UMW_PG_URL
  infra up|down|status     local Redis, Postgres primary + replica, Kafka (scripts/infra.sh)
  dlq list [--limit N] [--json]
                           dead-lettered commands (UMW_TOPIC_PREFIX umw.commands.dlq.v1)
  dlq replay <id|partition:offset|--all>
                           republish dead letters to the commands topic
  status [--json] [--once] [--targets host:port,...]
                           live golden signals of a running mesh, read from its metrics listeners
  canary [--once] [--json]
                           run end-to-end transactions against a running mesh and print each result
`;

const INFRA_SCRIPT = fileURLToPath(new URL("../scripts/infra.sh", import.meta.url));

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  switch (command) {
    case "serve":
      return serve(loadConfig(), args);
    case "certs": {
      const config = loadConfig();
      const created = createDevCertificates({ dir: config.certsDir, identities: MESH_IDENTITIES, force: args.includes("--force"), loopback: !args.includes("--no-loopback") });
      console.log(created.length ? `certs: created ${created.join(", ")} in ${config.certsDir}` : `certs: up to date in ${config.certsDir}`);
      return 0;
    }
    case "migrate": {
      const applied = await migrate(loadConfig().pgUrl);
      console.log(applied.length ? `migrate: applied ${applied.map((m) => `${m.version}_${m.name}`).join(", ")}` : "migrate: up to date");
      return 0;
    }
    case "token":
      return (await import("./token.js")).runToken(args);
    case "dlq":
      return (await import("./dlq.js")).runDlq(args);
    case "status":
      return (await import("./status.js")).runStatus(loadConfig(), args);
    case "canary":
      return (await import("./canary.js")).runCanary(loadConfig(), args);
    case "envoy-config": case "control-plane": return (await import("./envoy.js")).runEnvoyCommand(command, args);
    case "infra":
      return spawnSync(INFRA_SCRIPT, args, { stdio: "inherit" }).status ?? 1;
    case undefined:
    case "help":
    case "--help":
      console.log(USAGE);
      return command ? 0 : 2;
    default:
      console.error(`umw: unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}

async function serve(given: Config, args: string[]): Promise<number> {
  // `--embedded` is UMW_EMBEDDED=1: every service reads the mode from its config.
  const config: Config = args.includes("--embedded") ? { ...given, embedded: true } : given;
  const names = args.filter((arg) => arg !== "--embedded");
  // `all` is every service but the canary; `serve all canary` adds it.
  const wanted = names.includes("all") ? [...new Set([...ALL_SERVICES, ...names.filter((name) => name !== "all")])] : names;
  const unknown = wanted.filter((name) => !(name in SERVICES));
  if (wanted.length === 0 || unknown.length) {
    console.error(`umw serve: ${unknown.length ? `unknown service(s) ${unknown.join(", ")}` : "name a service"}; known: ${Object.keys(SERVICES).join(", ")}, all`);
    return 2;
  }
  // Before any service is wired, so the first store connection and call are traced.
  const serviceName = config.serviceName || telemetryServiceName(wanted);
  const telemetry = startTelemetry(config, serviceName);
  const log = rootLogger(config.logLevel);
  if (config.otlpEndpoint) log.info({ otlpEndpoint: config.otlpEndpoint, sampleRatio: config.traceSampleRatio, serviceName }, "tracing on");
  // One infrastructure for the process: every service wires itself on it the same way.
  const infrastructure = config.embedded
    ? await (await import("../services/embedded/index.js")).openEmbedded(config, log)
    : (await import("../runtime/infrastructure-real.js")).realInfrastructure(config, log);
  const embedded = infrastructure.kind === "embedded";
  const runtime = await composeRuntime(config, log, infrastructure);
  const running: RunningService[] = [];
  // The metrics listener of the process (every service's metrics), on its own address and port.
  collectProcessMetrics();
  declareRefusalMetrics();
  const serviceUp = gauge<"service">(defaultRegistry, { name: "umw_service_up", help: "1 for each service this process runs once it has started.", labelNames: ["service"] });
  const metrics = await serveMetrics(config.metricsHost, metricsPortOf(config.metricsPort, wanted), defaultRegistry, config.metricsTls ? runtime.identity(wanted[0]!) : undefined);
  log.info({ metrics: metrics.url }, "metrics listening");
  let stopping = false;
  const stopAll = async (signal: string) => {
    if (stopping) {
      log.warn({ signal }, "second signal: exiting now");
      process.exit(1);
    }
    stopping = true;
    log.info({ signal }, "stopping");
    // The edge first (no new requests), then the others in the reverse order of their start.
    const order = [...running.filter((service) => service.name === "edge"), ...running.filter((service) => service.name !== "edge").reverse()];
    for (const service of order) await service.stop().catch((error) => log.error({ err: error, service: service.name }, "stop failed"));
    await infrastructure.close().catch((error: unknown) => log.error({ err: error }, "closing the stores failed"));
    await metrics.close();
    await telemetry.shutdown().catch((error: unknown) => log.warn({ err: error }, "flushing the last spans failed"));
    log.info("stopped");
    process.exit(0);
  };
  process.on("SIGINT", () => void stopAll("SIGINT"));
  process.on("SIGTERM", () => void stopAll("SIGTERM"));
  const started = Date.now();
  const startOne = async (name: string) => {
    const health = processReadiness.reporter("service", name);
    health.notReady("starting");
    try {
      const module = await SERVICES[name]!();
      const service = await module.start({ ...runtime, log: log.child({ service: name }) });
      running.push(service);
      serviceUp.set({ service: name }, 1);
      health.ready();
      log.info({ service: name, startMs: Date.now() - started }, "service started");
    } catch (error) {
      health.notReady(`failed to start: ${(error as Error).message}`);
      throw error;
    }
  };
  // The edge listens first: /healthz answers at once, /readyz says what is still starting, and
  // requests whose upstream is not up yet get a prompt 503 instead of a refused connection. The
  // other services start side by side (each waits on its own stores and consumer group join).
  if (wanted.includes("edge")) await startOne("edge");
  const rest = wanted.filter((name) => name !== "edge");
  if (embedded) {
    // One in-process PGlite and bus: nothing to gain from starting side by side.
    for (const name of rest) await startOne(name);
  } else {
    const results = await Promise.allSettled(rest.map(startOne));
    const failed = results.find((result): result is PromiseRejectedResult => result.status === "rejected");
    if (failed) throw failed.reason;
  }
  log.info({ services: wanted, startMs: Date.now() - started, ...(embedded && { embedded: true }) }, "umw ready");
  return new Promise<number>(() => undefined);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    // Whatever failed, its message may quote a store's URL or a driver's echo of a credential.
    if (error instanceof ConfigError) console.error(`umw: ${redactText(error.message)}`);
    else console.error(`umw: ${redactText(String((error as Error).message ?? error))}`);
    process.exit(1);
  },
);
