// `umw serve all` on real Postgres, Redis and Kafka, as deployed colocated: the edge's calls to the
// query and command services go in process (UMW_IN_PROCESS_TRANSPORT, the default), and the query
// service's L1 follows the domain events. The configured query and command addresses have nothing
// listening, so every answer below came through the in-process transport.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { DevIssuer } from "../services/edge/dev-issuer.js";
import { MESH_IDENTITIES } from "../services/registry.js";
import { testCerts, type TestCerts } from "./support/certs.js";
import { createTestDatabase, type TestDatabase } from "./support/database.js";
import { infra } from "./support/env.js";
import { dropKafkaPrefix, runPrefix } from "./support/kafka.js";
import { freePort, freeServicePorts } from "./support/ports.js";
import { waitFor } from "./support/wait.js";
import { umw, type Proc } from "./envoy/support.js";
import { dropRedisPrefix } from "./support/redis.js";

/** The entity's data in a REST answer (the entity, or a response holding it). */
function dataOf(body: string): unknown {
  const json = JSON.parse(body) as { data?: unknown; entity?: { data?: unknown } };
  return (json.entity ?? json).data;
}

const ISSUER = "https://issuer.colocated.test";
const TENANT = "acme";
const L1_MAX_ENTRIES = 4;

describe("umw serve all, colocated (in-process transport, coherent L1)", { timeout: 240_000 }, () => {
  let certs: TestCerts;
  let db: TestDatabase;
  let dir: string;
  let services: Proc | undefined;
  let slowBackend: Server;
  const slowRequests: IncomingMessage[] = [];
  let base: string;
  let metricsUrl: string;
  let issuer: DevIssuer;
  const prefix = runPrefix();
  const keyPrefix = prefix.replace(/\.$/, ":");

  const token = (scopes: string, tenant = TENANT) =>
    issuer.token({ subject: "alice", audience: "umw", ttlS: 600, extra: { tenant, scope: scopes } }).then((jwt) => `Bearer ${jwt}`);
  let reader: string;
  let writer: string;

  before(async () => {
    certs = testCerts(MESH_IDENTITIES);
    db = await createTestDatabase({ replica: true });
    dir = mkdtempSync(join(tmpdir(), "umw-colocated-"));
    issuer = await DevIssuer.open(join(dir, "issuer"), ISSUER);
    reader = await token("entities:read");
    writer = await token("entities:read entities:write commands:read");
    // A backend that never answers: only the caller's deadline ends a read of type `slow`.
    slowBackend = createServer((req) => void slowRequests.push(req));
    await new Promise<void>((resolve) => slowBackend.listen(0, "127.0.0.1", resolve));
    const slowPort = (slowBackend.address() as { port: number }).port;
    const schema = { type: "object", required: ["title"], properties: { title: { type: "string" } }, additionalProperties: false };
    const config = {
      resources: {
        // An L1 that, without events, would hold a copy for 10 minutes: only a domain event can change it sooner.
        todo: { schema, cache: { ttlMs: 600_000, l1Ms: 600_000 } },
        slow: { backend: { kind: "http", urlTemplate: `http://127.0.0.1:${slowPort}/things/{tenant}/{id}`, timeoutMs: 30_000 } },
      },
    };
    writeFileSync(join(dir, "config.yaml"), stringify(config));
    const ports = await freeServicePorts();
    const [nowhereQuery, nowhereCommand] = [await freePort(), await freePort()];
    services = umw(["serve", "all"], {
      ...Object.fromEntries(Object.entries(ports).map(([key, value]) => [key, String(value)])),
      UMW_CONFIG: join(dir, "config.yaml"),
      UMW_CERTS_DIR: certs.dir,
      UMW_AUTH_MODE: "dev",
      UMW_AUTH_DEV_KEYS_DIR: join(dir, "issuer"),
      UMW_AUTH_ISSUER: ISSUER,
      // The edge reaches query and command in process only: at these addresses nothing listens.
      UMW_QUERY_ADDRESS: `127.0.0.1:${nowhereQuery}`,
      UMW_COMMAND_ADDRESS: `127.0.0.1:${nowhereCommand}`,
      // The edge may read single entities but not list them: the mesh table, enforced in process.
      UMW_MESH_AUTHZ: JSON.stringify({ edge: ["umw.v1.QueryService/GetEntity", "umw.v1.CommandService/*", "umw.v1.RealtimeService/*"] }),
      UMW_QUERY_L1_MAX_ENTRIES: String(L1_MAX_ENTRIES),
      UMW_PG_URL: db.url,
      UMW_PG_REPLICA_URL: db.replicaUrl,
      UMW_REDIS_URL: infra.redisUrl,
      UMW_CACHE_KEY_PREFIX: keyPrefix,
      UMW_TOPIC_PREFIX: prefix,
      UMW_RELAY_POLL_MS: "100",
      UMW_COMMAND_WATCH_POLL_MS: "100",
      UMW_LOG_LEVEL: "info",
    });
    await services.waitFor(/umw ready/, 90_000);
    base = `http://127.0.0.1:${ports.UMW_EDGE_PORT}`;
    metricsUrl = `http://127.0.0.1:${ports.UMW_METRICS_PORT}/metrics`;
  });

  after(async () => {
    await services?.stop();
    for (const req of slowRequests) req.socket.destroy();
    await new Promise((resolve) => slowBackend?.close(resolve));
    await db?.drop().catch(() => undefined);
    certs?.remove();
    rmSync(dir, { recursive: true, force: true });
    await dropRedisPrefix(keyPrefix);
    await dropKafkaPrefix(prefix).catch(() => undefined);
  });

  const entityPath = (id: string, type = "todo") => `${base}/v1/tenants/${TENANT}/types/${type}/entities/${id}`;

  async function read(id: string, authorization = reader): Promise<{ status: number; version: bigint | undefined; cacheStatus: string; body: string }> {
    const response = await fetch(entityPath(id), { headers: { authorization } });
    const etag = response.headers.get("etag");
    return { status: response.status, version: etag ? BigInt(/W\/"(\d+)"/.exec(etag)![1]!) : undefined, cacheStatus: response.headers.get("cache-status") ?? "", body: await response.text() };
  }

  /** A write through the command path, until its command is APPLIED; the entity's new version. */
  async function write(method: "POST" | "PUT" | "DELETE", id: string | undefined, data?: object): Promise<{ entityId: string; version: bigint }> {
    const response = await fetch(id ? entityPath(id) : `${base}/v1/tenants/${TENANT}/types/todo/entities`, {
      method,
      headers: { authorization: writer, "content-type": "application/json", "idempotency-key": `"${randomUUID()}"` },
      body: data && JSON.stringify(data),
    });
    const text = await response.text();
    assert.equal(response.status, 202, `${method}: ${text}\n${services?.output().slice(-2000)}`);
    const { receipt } = JSON.parse(text) as { receipt: { commandId: string; entityId: string } };
    const applied = await waitFor(
      async () => {
        type Status = { state: string; version?: string };
        const answer = (await (await fetch(`${base}/v1/tenants/${TENANT}/commands/${receipt.commandId}`, { headers: { authorization: writer } })).json()) as Status & { command?: Status };
        const status = answer.command ?? answer;
        assert.notEqual(status.state, "COMMAND_STATE_REJECTED", JSON.stringify(status));
        return status.state === "COMMAND_STATE_APPLIED" && status;
      },
      { what: `command ${receipt.commandId} applied`, everyMs: 50, timeoutMs: 30_000 },
    ).catch((error: Error) => {
      throw new Error(`${error.message}\n${services?.output().slice(-6000)}`);
    });
    return { entityId: receipt.entityId, version: BigInt(applied.version ?? "0") };
  }

  async function metric(name: string, labels: string): Promise<number> {
    const text = await (await fetch(metricsUrl)).text();
    const line = text.split("\n").find((candidate) => candidate.startsWith(`${name}{`) && labels.split(",").every((label) => candidate.includes(label)));
    return line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : 0;
  }

  test("reads and writes go in process (nothing listens at the query and command addresses), counted by the transport and the server metrics", async () => {
    const inProcessBefore = await metric("umw_in_process_calls_total", 'method="GetEntity"');
    const serverBefore = await metric("rpc_server_calls_total", 'rpc_method="GetEntity",rpc_grpc_status_code="0"');
    const { entityId, version } = await write("POST", undefined, { title: "in process" });
    assert.equal(version, 1n);
    const first = await read(entityId);
    assert.equal(first.status, 200, first.body);
    assert.equal(first.version, 1n);
    assert.deepEqual(dataOf(first.body), { title: "in process" });
    assert.ok((await metric("umw_in_process_calls_total", 'method="GetEntity"')) >= inProcessBefore + 1);
    assert.ok((await metric("umw_in_process_calls_total", 'method="CreateEntity"')) >= 1);
    assert.ok((await metric("rpc_server_calls_total", 'rpc_method="GetEntity",rpc_grpc_status_code="0"')) >= serverBefore + 1, "the server chain's metrics count in-process calls");
  });

  test("refusals on the in-process path: the query service's policy, the edge's tenant check, the mesh table", async () => {
    const noScope = await read("anything", await token("commands:read"));
    assert.equal(noScope.status, 403, noScope.body);
    assert.match(noScope.body, /MISSING_SCOPE/);
    const otherTenant = await read("anything", await token("entities:read", "globex"));
    assert.equal(otherTenant.status, 403);
    assert.match(otherTenant.body, /TENANT_MISMATCH/);
    const list = await fetch(`${base}/v1/tenants/${TENANT}/types/todo/entities`, { headers: { authorization: reader } });
    const listBody = await list.text();
    assert.equal(list.status, 403, listBody);
    assert.match(listBody, /MESH_METHOD_DENIED/);
    assert.ok((await metric("rpc_server_calls_total", 'rpc_method="ListEntities",rpc_grpc_status_code="7"')) >= 1, "the refusal is counted as PERMISSION_DENIED");
  });

  test("the caller's deadline ends an in-process call DEADLINE_EXCEEDED and cancels the backend request", async () => {
    const before = slowRequests.length;
    const started = Date.now();
    const response = await fetch(`${base}/umw.v1.QueryService/GetEntity`, {
      method: "POST",
      headers: { authorization: reader, "content-type": "application/json", "connect-protocol-version": "1", "connect-timeout-ms": "500" },
      body: JSON.stringify({ tenant: TENANT, type: "slow", id: "s1" }),
    });
    const body = (await response.json()) as { code: string };
    assert.equal(body.code, "deadline_exceeded", JSON.stringify(body));
    assert.ok(Date.now() - started < 5_000, `answered after ${Date.now() - started} ms`);
    assert.equal(slowRequests.length, before + 1, "the read reached the backend");
    const request = slowRequests.at(-1)!;
    await waitFor(() => request.socket.destroyed || request.destroyed, { what: "the backend request cancelled", everyMs: 20, timeoutMs: 10_000 });
  });

  test("a write through the command path changes the L1 copy when its event arrives; a reader never sees a version go back", async () => {
    const { entityId } = await write("POST", undefined, { title: "v1" });
    await read(entityId);
    const cached = await read(entityId);
    assert.match(cached.cacheStatus, /detail=l1/, "the second read is an L1 hit");
    assert.equal(cached.version, 1n);

    const seen: bigint[] = [];
    let reading = true;
    const readerLoop = (async () => {
      while (reading) {
        const answer = await read(entityId);
        if (answer.status === 200) seen.push(answer.version!);
      }
    })();
    let last = 1n;
    try {
      for (let n = 2; n <= 5; n++) last = (await write("PUT", entityId, { title: `v${n}` })).version;
    } finally {
      reading = false;
      await readerLoop;
    }
    assert.equal(last, 5n);
    // The L1 would keep v1 for 10 minutes: the new version can only come from the event.
    const updated = await waitFor(
      async () => {
        const answer = await read(entityId);
        return answer.version === last && answer;
      },
      { what: `version ${last} of ${entityId} at the edge`, everyMs: 20, timeoutMs: 30_000 },
    );
    assert.match(updated.cacheStatus, /detail=l1/, `served from the L1, replaced by the event: ${updated.cacheStatus}`);
    assert.deepEqual(dataOf(updated.body), { title: "v5" });
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i]! >= seen[i - 1]!, `versions seen in order: ${seen.join(",")}`);
    assert.ok(seen.length > 0);

    await write("DELETE", entityId);
    await waitFor(async () => (await read(entityId)).status === 404, { what: `${entityId} gone at the edge`, everyMs: 20, timeoutMs: 30_000 });
  });

  test(`the L1 holds at most UMW_QUERY_L1_MAX_ENTRIES (${L1_MAX_ENTRIES}) keys`, async () => {
    const ids: string[] = [];
    for (let i = 0; i < L1_MAX_ENTRIES + 2; i++) ids.push((await write("POST", undefined, { title: `cap ${i}` })).entityId);
    for (const id of ids) {
      await read(id);
      assert.match((await read(id)).cacheStatus, /detail=l1/, `${id} is in the L1 right after its read`);
    }
    // The first keys were evicted to keep the cap: their next read comes from Redis.
    const evicted = await read(ids[0]!);
    assert.equal(evicted.status, 200);
    assert.doesNotMatch(evicted.cacheStatus, /detail=l1/, `evicted: ${evicted.cacheStatus}`);
    assert.match((await read(ids.at(-1)!)).cacheStatus, /detail=l1/, "the newest key is still there");
  });
});
