import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { adsBootstrap, bootstrapYaml } from "../../services/control-plane/bootstrap.js";
import { MESH_IDENTITIES } from "../../services/registry.js";
import { testCerts, type TestCerts } from "../support/certs.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { infra } from "../support/env.js";
import { dropKafkaPrefix, runPrefix } from "../support/kafka.js";
import { freePort, freeServicePorts } from "../support/ports.js";
import { waitFor } from "../support/wait.js";
import { clusterHosts, requireEnvoy, startProcess, umw, type Proc } from "../envoy/support.js";
import { dropRedisPrefix } from "../support/redis.js";

/** The browser origin both edges allow (CORS denies every origin unless configured). */
export const CORS_ORIGIN = "https://app.example";

/** One edge under test: where REST/Connect/gRPC-web (HTTP/1.1) and gRPC (HTTP/2) reach it. */
export interface EdgeUnderTest {
  readonly name: "node" | "envoy";
  /** HTTP/1.1 base URL (REST, Connect, gRPC-web). */
  readonly url: string;
  /** host:port speaking HTTP/2 cleartext (gRPC). */
  readonly h2c: string;
}

/**
 * The whole write path on real infrastructure, with both edges in front of the same services:
 * `umw serve all` (query, command, realtime, relay, processor, cache updater and the Node edge)
 * registering with `umw control-plane`, and Envoy on that control plane. Own database, key prefix
 * and topic prefix; `stop()` removes them.
 */
export interface Stack {
  readonly node: EdgeUnderTest;
  readonly envoy: EdgeUnderTest;
  readonly db: TestDatabase;
  readonly keyPrefix: string;
  /** The last output of every process (services, control plane, Envoy), for failure messages. */
  output(): string;
  stop(): Promise<void>;
}

/** How both edges authenticate: off (the conformance suite), or the dev issuer whose keys are in `keysDir`. */
export interface StackOptions {
  /**
   * Authentication ON at both edges with the dev issuer (`UMW_AUTH_MODE=dev`): its key in
   * `keysDir` (made there by `DevIssuer.open`), `iss` = `issuer` for the Node edge and Envoy alike.
   */
  readonly auth?: { readonly keysDir: string; readonly issuer: string };
  /** More settings for `umw serve all` (rate limits, say). */
  readonly env?: Readonly<Record<string, string>>;
}

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  requireEnvoy();
  const certs: TestCerts = testCerts(MESH_IDENTITIES);
  const db = await createTestDatabase();
  const prefix = runPrefix();
  const keyPrefix = prefix.replace(/\.$/, ":");
  const dir = mkdtempSync(join(tmpdir(), "umw-conformance-"));
  const procs: Proc[] = [];
  const stop = async () => {
    for (const proc of procs.reverse()) await proc.stop().catch(() => undefined);
    await db.drop().catch(() => undefined);
    certs.remove();
    rmSync(dir, { recursive: true, force: true });
    await dropRedisPrefix(keyPrefix);
    await dropKafkaPrefix(prefix).catch(() => undefined);
  };
  try {
    const [envoyPort, adminPort, controlPlanePort, nodeH2cPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    // The conformance suite compares what the two edges answer, not who may call (test/edge/auth.test.ts and
    // test/envoy/auth.test.ts are about that): both edges run with authentication explicitly off unless
    // `auth` is given. With it, one explicit issuer for both: the dev issuer's default `iss` names the
    // edge's own port, which differs between the Node edge and Envoy.
    const authEnv: Record<string, string> = options.auth
      ? { UMW_AUTH_MODE: "dev", UMW_AUTH_DEV_KEYS_DIR: options.auth.keysDir, UMW_AUTH_ISSUER: options.auth.issuer }
      : { UMW_AUTH_MODE: "none" };
    const controlPlane = umw(["control-plane"], { UMW_CERTS_DIR: certs.dir, UMW_CONTROL_PLANE_PORT: String(controlPlanePort), UMW_EDGE_PORT: String(envoyPort), ...authEnv, UMW_EDGE_CORS_ORIGINS: CORS_ORIGIN });
    procs.push(controlPlane);
    await controlPlane.waitFor(/control plane ready/);

    const ports = await freeServicePorts();
    // The demo types, plus `remote`: a type whose HTTP backend is down (a closed port), for the 503 case.
    const demo = parse(readFileSync("config/demo.yaml", "utf8")) as { resources: Record<string, unknown> };
    demo.resources.remote = { backend: { kind: "http", urlTemplate: `http://127.0.0.1:${await freePort()}/things/{tenant}/{id}`, timeoutMs: 500 } };
    const configFile = join(dir, "config.yaml");
    writeFileSync(configFile, stringify(demo));
    const services = umw(["serve", "all"], {
      ...Object.fromEntries(Object.entries(ports).map(([key, value]) => [key, String(value)])),
      UMW_EDGE_H2C_PORT: String(nodeH2cPort),
      UMW_EDGE_CORS_ORIGINS: CORS_ORIGIN,
      UMW_CERTS_DIR: certs.dir,
      ...authEnv,
      UMW_CONFIG: configFile,
      UMW_PG_URL: db.url,
      UMW_PG_REPLICA_URL: db.replicaUrl,
      UMW_REDIS_URL: infra.redisUrl,
      UMW_CACHE_KEY_PREFIX: keyPrefix,
      UMW_TOPIC_PREFIX: prefix,
      UMW_CONTROL_PLANE_ADDRESS: `127.0.0.1:${controlPlanePort}`,
      UMW_RELAY_POLL_MS: "100",
      UMW_COMMAND_WATCH_POLL_MS: "100",
      UMW_LOG_LEVEL: "info",
      ...options.env,
    });
    procs.push(services);
    await services.waitFor(/umw ready/, 60_000);

    const bootstrap = join(dir, "bootstrap.yaml");
    writeFileSync(
      bootstrap,
      bootstrapYaml(adsBootstrap({ certsDir: certs.dir, adminPort, controlPlane: { host: "127.0.0.1", port: controlPlanePort }, nodeId: "conformance" }), "conformance bootstrap"),
    );
    const envoy = startProcess(requireEnvoy(), ["-c", bootstrap, "--use-dynamic-base-id", "--concurrency", "1", "--log-level", "warn", "--drain-time-s", "1"]);
    procs.push(envoy);
    // Every routed cluster has a healthy endpoint: Envoy got listener, routes, clusters and endpoints.
    for (const cluster of ["query", "command", "realtime"]) {
      await waitFor(async () => ((await clusterHosts(adminPort, cluster)).some((host) => host.healthFlags === "healthy") ? true : undefined), { what: `Envoy's ${cluster} cluster healthy`, everyMs: 100, tolerateErrors: true, timeoutMs: 45_000 });
    }
    await waitFor(async () => ((await fetch(`http://127.0.0.1:${envoyPort}/healthz`)).status < 500 ? true : undefined), { what: "Envoy's edge listener", everyMs: 100, tolerateErrors: true, timeoutMs: 30_000 });
    return {
      node: { name: "node", url: `http://127.0.0.1:${ports.UMW_EDGE_PORT}`, h2c: `127.0.0.1:${nodeH2cPort}` },
      envoy: { name: "envoy", url: `http://127.0.0.1:${envoyPort}`, h2c: `127.0.0.1:${envoyPort}` },
      db,
      keyPrefix,
      output: () => procs.map((proc) => proc.output().slice(-3000)).join("\n---\n"),
      stop,
    };
  } catch (error) {
    const outputs = procs.map((proc) => proc.output().slice(-3000)).join("\n---\n");
    await stop();
    throw new Error(`${(error as Error).message}\n${outputs}`);
  }
}
