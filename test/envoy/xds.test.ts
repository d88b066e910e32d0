import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { adsBootstrap, bootstrapYaml } from "../../services/control-plane/bootstrap.js";
import { DevIssuer } from "../../services/edge/dev-issuer.js";
import { MESH_IDENTITIES } from "../../services/registry.js";
import { testCerts, type TestCerts } from "../support/certs.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { infra, runId } from "../support/env.js";
import { freePort } from "../support/ports.js";
import { waitFor } from "../support/wait.js";
import { clusterHosts, requireEnvoy, startProcess, umw, type Proc } from "./support.js";
import { dropRedisPrefix } from "../support/redis.js";

const TENANT = "t1";

describe("Envoy on the xDS control plane", { timeout: 240_000 }, () => {
  let certs: TestCerts;
  let db: TestDatabase;
  let dir: string;
  const keyPrefix = `t${runId()}:`;
  const procs: Proc[] = [];
  let controlPlane: Proc;
  let envoy: Proc;
  let edgePort: number;
  let adminPort: number;
  let controlPlanePort: number;
  // The control plane runs with UMW_AUTH_MODE=dev (the default): Envoy checks tokens of the dev issuer whose key is in `dir`.
  let token: string;

  const queryInstance = async (): Promise<{ proc: Proc; port: number }> => {
    const port = await freePort();
    const proc = umw(["serve", "query"], {
      UMW_CERTS_DIR: certs.dir,
      UMW_CONFIG: "config/demo.yaml",
      UMW_QUERY_PORT: String(port),
      UMW_METRICS_PORT: String(await freePort()),
      UMW_PG_REPLICA_URL: db.replicaUrl,
      UMW_REDIS_URL: infra.redisUrl,
      UMW_CACHE_KEY_PREFIX: keyPrefix,
      UMW_CONTROL_PLANE_ADDRESS: `127.0.0.1:${controlPlanePort}`,
      UMW_LOG_LEVEL: "info",
    });
    procs.push(proc);
    await proc.waitFor(/registered with the control plane/);
    return { proc, port };
  };

  const get = (id: string, headers: Record<string, string> = {}) =>
    fetch(`http://127.0.0.1:${edgePort}/v1/tenants/${TENANT}/types/todo/entities/${id}`, { headers: { authorization: `Bearer ${token}`, ...headers } });

  before(async () => {
    requireEnvoy();
    certs = testCerts(MESH_IDENTITIES);
    db = await createTestDatabase();
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    await client.query("INSERT INTO umw_entities (tenant, type, id, version, data) VALUES ($1, 'todo', 'a', 1, $2)", [TENANT, JSON.stringify({ title: "through Envoy" })]);
    await client.end();
    await db.syncReplica();
    dir = mkdtempSync(join(tmpdir(), "umw-envoy-"));
    [edgePort, adminPort, controlPlanePort] = [await freePort(), await freePort(), await freePort()];
    const keys = join(dir, "dev-issuer");
    token = await (await DevIssuer.open(keys, `http://127.0.0.1:${edgePort}`)).token({ subject: "xds-test", audience: "umw", ttlS: 600, extra: { tenant: TENANT, scope: "entities:read" } });
    controlPlane = umw(["control-plane"], { UMW_CERTS_DIR: certs.dir, UMW_CONTROL_PLANE_PORT: String(controlPlanePort), UMW_EDGE_PORT: String(edgePort), UMW_AUTH_MODE: "dev", UMW_AUTH_DEV_KEYS_DIR: keys });
    procs.push(controlPlane);
    await controlPlane.waitFor(/control plane ready/);
    const bootstrap = join(dir, "bootstrap.yaml");
    writeFileSync(
      bootstrap,
      bootstrapYaml(adsBootstrap({ certsDir: certs.dir, adminPort, controlPlane: { host: "127.0.0.1", port: controlPlanePort }, nodeId: "test-edge" }), "test bootstrap"),
    );
    envoy = startProcess(requireEnvoy(), ["-c", bootstrap, "--use-dynamic-base-id", "--concurrency", "2", "--log-level", "warn", "--drain-time-s", "1"]);
    procs.push(envoy);
    // Envoy's ext_authz asks the policy service before routing: one instance, registered like the query instances.
    const policy = umw(["serve", "policy"], {
      UMW_CERTS_DIR: certs.dir,
      UMW_POLICY_PORT: String(await freePort()),
      UMW_CONTROL_PLANE_ADDRESS: `127.0.0.1:${controlPlanePort}`,
      UMW_LOG_LEVEL: "info",
    });
    procs.push(policy);
    await policy.waitFor(/registered with the control plane/);
  });

  after(async () => {
    for (const proc of procs.reverse()) await proc.stop().catch(() => undefined);
    await db?.drop();
    certs?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
    await dropRedisPrefix(keyPrefix);
  });

  test("REST reads through Envoy; instances join and leave EDS under load without a failed request", async () => {
    const a = await queryInstance();
    // Envoy got the listener, routes and clusters over ADS, and A as the query cluster's endpoint.
    const first = await waitFor(async () => {
      const response = await get("a");
      return response.status === 200 ? ((await response.json()) as { entity?: { data?: { title?: string } } }) : (await response.arrayBuffer(), undefined);
    }, { what: "a read through Envoy", everyMs: 100, tolerateErrors: true, timeoutMs: 30_000 });
    assert.equal(first.entity?.data?.title, "through Envoy");

    // REST errors carry google.rpc.Status with the ErrorInfo reason (error_details in the descriptor set).
    const missing = await get("nope");
    assert.equal(missing.status, 404);
    const status = (await missing.json()) as { code: number; message: string; details: Array<{ "@type": string; reason?: string }> };
    assert.equal(status.code, 5);
    assert.ok(status.details.some((detail) => detail["@type"].endsWith("google.rpc.ErrorInfo") && detail.reason), JSON.stringify(status));

    // Continuous load from here on.
    const failures: string[] = [];
    let ok = 0;
    let loading = true;
    const worker = async () => {
      while (loading) {
        try {
          const response = await get("a");
          await response.arrayBuffer();
          if (response.status === 200) ok += 1;
          else failures.push(`HTTP ${response.status}`);
        } catch (error) {
          failures.push((error as Error).message);
        }
      }
    };
    const workers = Array.from({ length: 4 }, worker);

    const b = await queryInstance();
    const bAddress = `127.0.0.1:${b.port}`;
    const aAddress = `127.0.0.1:${a.port}`;
    await waitFor(async () => {
      const hosts = await clusterHosts(adminPort, "query");
      const host = hosts.find((h) => h.address === bAddress);
      return host && host.healthFlags === "healthy" && host.rqSuccess > 0 ? true : undefined;
    }, { what: "B serves through Envoy", everyMs: 100, tolerateErrors: true, timeoutMs: 30_000 });

    assert.equal(await a.proc.stop("SIGTERM"), 0, a.proc.output().slice(-3000));
    await waitFor(async () => ((await clusterHosts(adminPort, "query")).some((h) => h.address === aAddress) ? undefined : true), { what: "A leaves the query cluster", everyMs: 100, tolerateErrors: true, timeoutMs: 30_000 });
    const okAtEjection = ok;
    await waitFor(async () => (ok > okAtEjection + 100 ? true : undefined), { what: "reads go on after A left", everyMs: 100, tolerateErrors: true, timeoutMs: 30_000 });
    loading = false;
    await Promise.all(workers);
    assert.deepEqual(failures, [], `failed requests during the change (of ${ok + failures.length})`);
    console.log(`${ok} reads through Envoy while B joined and A left, none failed`);
    assert.deepEqual((await clusterHosts(adminPort, "query")).map((h) => h.address), [bAddress]);
    assert.match(a.proc.output(), /deregistered|registered with the control plane/);
  });

  test("a killed instance leaves EDS; without a token Envoy answers 401; the listener Envoy applied strips client-sent mesh headers first", async () => {
    const c = await queryInstance();
    const cAddress = `127.0.0.1:${c.port}`;
    await waitFor(async () => ((await clusterHosts(adminPort, "query")).some((h) => h.address === cAddress) ? true : undefined), { what: "C in the cluster", everyMs: 100, tolerateErrors: true, timeoutMs: 30_000 });
    await c.proc.stop("SIGKILL");
    await waitFor(async () => ((await clusterHosts(adminPort, "query")).some((h) => h.address === cAddress) ? undefined : true), { what: "C is dropped after its registration stream broke", everyMs: 100, tolerateErrors: true, timeoutMs: 30_000 });
    const read = await get("a", { "x-umw-principal": "root" });
    assert.equal(read.status, 200);
    await read.arrayBuffer();
    const anonymous = await get("a", { authorization: "" });
    assert.equal(anonymous.status, 401);
    assert.equal(((await anonymous.json()) as { details: { reason: string }[] }).details[0]?.reason, "TOKEN_MISSING");
    assert.match(controlPlane.output(), /instance gone/);
    // What Envoy runs (from LDS), not what was sent: the first filter drops x-umw-*, jwt_authn follows.
    const dump = JSON.stringify(await (await fetch(`http://127.0.0.1:${adminPort}/config_dump?resource=dynamic_listeners`)).json());
    const strip = dump.indexOf("umw.strip_client_principal");
    assert.ok(strip >= 0 && strip < dump.indexOf("envoy.filters.http.cors") && strip < dump.indexOf("envoy.filters.http.jwt_authn"), dump.slice(0, 2000));
  });
});
