// Envoy's resilience toward the mesh (services/control-plane/upstream-resilience.ts), with a real
// Envoy from the config umw generates in front of real mTLS upstreams that fail on command: reads
// are retried on UNAVAILABLE, writes are not, and a host failing in a row is ejected by outlier
// detection (visible in Envoy's admin /clusters).
//
//   node --import tsx --test test/envoy/resilience.test.ts
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { CommandService, CommandState } from "../../gen/umw/v1/command_pb.js";
import { QueryService } from "../../gen/umw/v1/query_pb.js";
import { Code, RpcError } from "../../runtime/errors.js";
import { MeshServer } from "../../runtime/server.js";
import { serverCredentials } from "../../runtime/tls.js";
import { testCerts, type TestCerts } from "../support/certs.js";
import { waitFor } from "../support/wait.js";
import { clusterHosts, requireEnvoy, startPolicyServer, startStaticEnvoy, type StaticEnvoy } from "./support.js";

const log = pino({ level: "silent" });
const unavailable = () => new RpcError(Code.UNAVAILABLE, "BACKEND_UNAVAILABLE", "backend down");

describe("upstream resilience through Envoy (real Envoy)", () => {
  let certs: TestCerts;
  let dir: string;
  let query: MeshServer;
  let command: MeshServer;
  let policy: Awaited<ReturnType<typeof startPolicyServer>>;
  let envoy: StaticEnvoy;
  let envoyUrl: string;
  const attempts = new Map<string, number>();
  const count = (key: string) => {
    const n = (attempts.get(key) ?? 0) + 1;
    attempts.set(key, n);
    return n;
  };

  before(async () => {
    requireEnvoy();
    certs = testCerts(["query", "command", "policy", "envoy"]);
    dir = mkdtempSync(join(tmpdir(), "umw-envoy-resilience-"));
    query = new MeshServer({ name: "query", host: "127.0.0.1", port: 0, credentials: serverCredentials(certs.identity("query")), log, drainTimeoutMs: 200 });
    query.addService(QueryService, {
      async getEntity(request) {
        const attempt = count(`get:${request.id}`);
        const flaky = /^flaky-(\d+)-/.exec(request.id);
        if (request.id.startsWith("down-") || (flaky && attempt <= Number(flaky[1]))) throw unavailable();
        return { entity: { tenant: request.tenant, type: request.type, id: request.id, version: 1n } };
      },
      async batchGetEntities() {
        return {};
      },
      async listEntities() {
        return {};
      },
    });
    const queryPort = await query.start();
    command = new MeshServer({ name: "command", host: "127.0.0.1", port: 0, credentials: serverCredentials(certs.identity("command")), log, drainTimeoutMs: 200 });
    const receipt = { receipt: { commandId: "c1", state: CommandState.ACCEPTED, statusUrl: "/v1/tenants/t1/commands/c1", entityId: "e1" } };
    command.addService(CommandService, {
      async createEntity(request) {
        count(`create:${request.id}`);
        throw unavailable();
      },
      async updateEntity() {
        return receipt;
      },
      async patchEntity() {
        return receipt;
      },
      async deleteEntity() {
        return receipt;
      },
      async getCommand(request) {
        const attempt = count(`command:${request.commandId}`);
        if (attempt <= 1) throw unavailable();
        return { command: { commandId: request.commandId, tenant: request.tenant, state: CommandState.APPLIED, version: 1n } };
      },
      async *watchCommand() {},
    });
    const commandPort = await command.start();
    policy = await startPolicyServer(certs.identity("policy"));

    envoy = await startStaticEnvoy({
      dir,
      title: "test: Envoy resilience toward the mesh",
      certsDir: certs.dir,
      upstreams: { query: { host: "127.0.0.1", port: queryPort }, command: { host: "127.0.0.1", port: commandPort }, policy: { host: "127.0.0.1", port: policy.port } },
      healthy: ["query", "command"],
    });
    envoyUrl = envoy.url;
  });

  after(async () => {
    await envoy?.stop();
    await Promise.all([query?.stop(), command?.stop(), policy?.stop()]);
    certs?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("a read failing UNAVAILABLE twice succeeds on Envoy's third attempt; GetCommand is retried as a read", async () => {
    const response = await fetch(`${envoyUrl}/v1/tenants/t1/types/book/entities/flaky-2-envoy`);
    assert.equal(response.status, 200, `${await response.clone().text()}\n${envoy.proc.output().slice(-2000)}`);
    assert.equal(attempts.get("get:flaky-2-envoy"), 3);

    const status = await fetch(`${envoyUrl}/v1/tenants/t1/commands/retried-read`);
    assert.equal(status.status, 200, await status.clone().text());
    assert.equal(attempts.get("command:retried-read"), 2);
  });

  test("a write failing UNAVAILABLE is not retried by Envoy: exactly one attempt", async () => {
    const response = await fetch(`${envoyUrl}/v1/tenants/t1/types/book/entities?id=envoy-write`, {
      method: "POST",
      headers: { "content-type": "application/json", "idempotency-key": "k-envoy-write" },
      body: JSON.stringify({ title: "once" }),
    });
    assert.equal(response.status, 503, await response.clone().text());
    assert.equal(attempts.get("create:envoy-write"), 1);
  });

  test("outlier detection flags a host that fails in a row (gRPC UNAVAILABLE counts as a gateway failure), and never ejects the last host", async () => {
    const stat = async (name: string) => {
      const text = await (await fetch(`http://127.0.0.1:${envoy.adminPort}/stats?filter=^cluster\\.query\\.outlier_detection\\.${name}$`)).text();
      return Number(/: (\d+)/.exec(text)?.[1] ?? NaN);
    };
    // The flaky read above may have been detected already (two failures in a row): count from here.
    const before = await stat("ejections_detected_consecutive_gateway_failure");
    const overflowBefore = await stat("ejections_overflow");
    for (let i = 0; i < 3; i++) assert.equal((await fetch(`${envoyUrl}/v1/tenants/t1/types/book/entities/down-${i}`)).status, 503);
    await waitFor(async () => (await stat("ejections_detected_consecutive_gateway_failure")) > before, { what: "a consecutive gateway failure detected on the query host" });
    // One host and max_ejection_percent 50: ejecting it would leave nothing, so Envoy records an overflow and keeps it.
    assert.ok((await stat("ejections_overflow")) > overflowBefore);
    assert.equal(await stat("ejections_active"), 0);
    assert.deepEqual((await clusterHosts(envoy.adminPort, "query")).map((host) => host.healthFlags), ["healthy"]);
  });

  test("the circuit breakers are in force on the mesh clusters (admin /clusters)", async () => {
    const clusters = await (await fetch(`http://127.0.0.1:${envoy.adminPort}/clusters`)).text();
    for (const line of ["query::default_priority::max_requests::1000", "query::default_priority::max_pending_requests::1024", "realtime::default_priority::max_requests::65536"]) {
      assert.ok(clusters.split("\n").includes(line), `${line} in\n${clusters.split("\n").filter((l) => l.includes("default_priority")).join("\n")}`);
    }
  });
});
