// One PATCH through the Node edge (and one through Envoy) yields one trace in Jaeger, across every hop of the write path:
// edge (HTTP server, gRPC client) → CommandService (gRPC server, Postgres) → relay (Kafka send of
// the outbox row) → processor (Kafka process, Postgres) → relay (Kafka send of the domain event) →
// cache updater (Kafka process, Redis) and realtime hub (Kafka process), each parent link checked.
// One GET: a cache hit without a Redis span, a miss with its lookup's.
// And the request id: echoed by the edge, and on the log lines of the processor and the cache
// updater, which only ever saw it in Kafka headers.
//
// Every service is its own `umw serve <name>` process (so each has its own service.name) on the
// real Postgres, Redis and Kafka (credentials from scripts/infra-env.sh); requests carry tokens of
// the edge's dev issuer, which Envoy verifies too (its ext_authz asks `umw serve policy`). Spans go
// to the Jaeger that `scripts/infra.sh up` (or `scripts/infra.sh jaeger`) starts.
//
//   scripts/infra.sh up && source scripts/infra-env.sh && node --import tsx --test test/tracing/traces.test.ts
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { MESH_IDENTITIES } from "../../services/registry.js";
import { testCerts, type TestCerts } from "../support/certs.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { devAuthorization } from "../support/embedded-env.js";
import { infra, runId } from "../support/env.js";
import { dropKafkaPrefix } from "../support/kafka.js";
import { freePort, freeServicePorts } from "../support/ports.js";
import { ServeProcess } from "../support/serve-process.js";
import { waitFor } from "../support/wait.js";
import { clusterHosts, requireEnvoy, startProcess, type Proc } from "../envoy/support.js";

const JAEGER_QUERY = `http://127.0.0.1:${process.env.UMW_JAEGER_QUERY_PORT ?? "16686"}`;
const JAEGER_OTLP = `http://127.0.0.1:${process.env.UMW_JAEGER_OTLP_PORT ?? "14317"}`;
const TENANT = "acme";
const TYPE = "note";
const RESOURCES = { [TYPE]: { schema: { type: "object", properties: { title: { type: "string" }, done: { type: "boolean" } } } } };
const SERVICES = ["edge", "command", "relay", "processor", "cache-updater", "realtime"] as const;

interface JaegerSpan {
  readonly spanID: string;
  readonly operationName: string;
  readonly references: readonly { readonly refType: string; readonly spanID: string }[];
  readonly tags: readonly { readonly key: string; readonly value: unknown }[];
  readonly processID: string;
}
interface JaegerTrace {
  readonly spans: readonly JaegerSpan[];
  readonly processes: Readonly<Record<string, { readonly serviceName: string }>>;
}

/** A span of the trace, with its service and parent resolved. */
interface Span {
  readonly id: string;
  readonly name: string;
  readonly service: string;
  readonly kind: string | undefined;
  readonly parent: string | undefined;
  /** The reference is a FOLLOWS_FROM (an OTel link), as messaging consumers make it. */
  readonly follows: boolean;
  readonly tags: ReadonlyMap<string, unknown>;
}

/** The database a client span talks to (the semantic conventions' old and new attribute names). */
const dbSystem = (span: Span) => span.tags.get("db.system.name") ?? span.tags.get("db.system");

async function fetchTrace(traceId: string): Promise<Span[] | undefined> {
  const response = await fetch(`${JAEGER_QUERY}/api/traces/${traceId}`);
  if (response.status === 404) return undefined;
  const text = await response.text();
  assert.equal(response.status, 200, `Jaeger answered ${response.status}: ${text}`);
  const body = JSON.parse(text) as { data: JaegerTrace[] | null };
  const trace = body.data?.[0];
  if (!trace) return undefined;
  return trace.spans.map((span) => {
    const tags = new Map(span.tags.map((tag) => [tag.key, tag.value]));
    return {
      id: span.spanID,
      name: span.operationName,
      service: trace.processes[span.processID]!.serviceName,
      kind: tags.get("span.kind") as string | undefined,
      // Jaeger keeps one reference per span it points to: a consumer span's parent that is also its
      // link (the messaging conventions' producer context) arrives as FOLLOWS_FROM.
      parent: (span.references.find((ref) => ref.refType === "CHILD_OF") ?? span.references.find((ref) => ref.refType === "FOLLOWS_FROM"))?.spanID,
      follows: span.references.some((ref) => ref.refType === "FOLLOWS_FROM"),
      tags,
    };
  });
}

describe("traces and request ids across the write path (real Kafka, Jaeger)", { timeout: 180_000 }, () => {
  const run = runId();
  const prefix = `t${run}.`;
  const serviceName = (name: string) => `umw-${run}-${name}`;
  const processes = new Map<string, ServeProcess>();
  let database: TestDatabase;
  let certs: TestCerts;
  let edge: string;
  let ports: Record<string, number>;
  /** `Bearer <token>` of the edge's dev issuer for TENANT. */
  let authorization: string;

  before(async () => {
    const jaegerUp = await fetch(`${JAEGER_QUERY}/api/services`).then((response) => response.ok, () => false);
    assert.ok(jaegerUp, `no Jaeger query API at ${JAEGER_QUERY}: run scripts/infra.sh jaeger (or up)`);
    database = await createTestDatabase();
    certs = testCerts(MESH_IDENTITIES);
    ports = await freeServicePorts();
    edge = `http://127.0.0.1:${ports.UMW_EDGE_PORT}`;
    // Minted before the edge starts: the dev issuer's key made here is the one the edge loads.
    authorization = await devAuthorization(certs.dir, ports.UMW_EDGE_PORT!, TENANT);
    const env: NodeJS.ProcessEnv = {
      ...Object.fromEntries(Object.entries(ports).map(([key, value]) => [key, String(value)])),
      // Each process's metrics listener on a free port of its own: a single-service process listens
      // on UMW_METRICS_PORT plus the service's offset, a port nobody checked was free.
      UMW_METRICS_PORT: "0",
      UMW_PG_URL: database.url,
      UMW_PG_REPLICA_URL: database.replicaUrl,
      UMW_REDIS_URL: infra.redisUrl,
      UMW_KAFKA_BROKERS: infra.kafkaBrokers.join(","),
      UMW_TOPIC_PREFIX: prefix,
      UMW_CACHE_KEY_PREFIX: prefix,
      UMW_TOPIC_PARTITIONS: "2",
      UMW_CERTS_DIR: certs.dir,
      UMW_AUTH_MODE: "dev",
      UMW_AUTH_DEV_KEYS_DIR: join(certs.dir, "dev-issuer"),
      UMW_CONFIG: "",
      UMW_RESOURCES: JSON.stringify(RESOURCES),
      UMW_RELAY_POLL_MS: "200",
      UMW_OTLP_ENDPOINT: JAEGER_OTLP,
      UMW_TRACE_SAMPLE_RATIO: "1",
      // Spans leave each process within 100 ms instead of the SDK's 5 s.
      OTEL_BSP_SCHEDULE_DELAY: "100",
      // "message handled" is a debug line.
      UMW_LOG_LEVEL: "debug",
    };
    const start = async (name: string) => processes.set(name, await ServeProcess.start([name], { ...env, UMW_SERVICE_NAME: serviceName(name) }));
    // The relay creates the topics before the consumers join.
    await Promise.all([start("edge"), start("command"), start("relay"), start("query")]);
    await Promise.all([start("processor"), start("cache-updater"), start("realtime")]);
    // Envoy's ext_authz asks the policy service (it fails closed, 503, without it).
    await start("policy");
  });

  after(async () => {
    await Promise.all([...processes.values()].map((proc) => proc.stop()));
    await database?.drop();
    certs?.remove();
    await dropKafkaPrefix(prefix).catch(() => undefined);
  });

  async function createNote(): Promise<string> {
    const response = await fetch(`${edge}/v1/tenants/${TENANT}/types/${TYPE}/entities`, {
      method: "POST",
      headers: { authorization, "content-type": "application/json", "idempotency-key": `"create-${randomBytes(6).toString("hex")}"` },
      body: JSON.stringify({ title: "first" }),
    });
    assert.equal(response.status, 202, await response.clone().text());
    const { receipt } = (await response.json()) as { receipt: { commandId: string; entityId: string } };
    let last = "";
    await waitFor(
      async () => {
        last = await (await fetch(`${edge}/v1/tenants/${TENANT}/commands/${receipt.commandId}`, { headers: { authorization } })).text();
        return (JSON.parse(last) as { command?: { state?: string } }).command?.state === "COMMAND_STATE_APPLIED";
      },
      { what: "the create to be applied", timeoutMs: 30_000, everyMs: 100 },
    ).catch((error: Error) => {
      const outputs = [...processes].map(([name, proc]) => `---- ${name}\n${proc.output(15)}`).join("\n");
      throw new Error(`${error.message}; last status ${last}\n${outputs}`);
    });
    return receipt.entityId;
  }

  test("one PATCH through the Node edge is one trace with every hop, correctly parented", async () => {
    const id = await createNote();
    const traceId = randomBytes(16).toString("hex");
    const callerSpan = randomBytes(8).toString("hex");
    const requestId = `trace-test-${run}`;
    const response = await fetch(`${edge}/v1/tenants/${TENANT}/types/${TYPE}/entities/${id}`, {
      method: "PATCH",
      headers: {
        authorization,
        "content-type": "application/json",
        "idempotency-key": `"patch-${run}"`,
        traceparent: `00-${traceId}-${callerSpan}-01`,
        "x-request-id": requestId,
      },
      body: JSON.stringify({ done: true }),
    });
    assert.equal(response.status, 202, await response.clone().text());
    assert.equal(response.headers.get("x-request-id"), requestId, "the edge echoes the caller's request id");

    const want = {
      edgeServer: (s: Span) => s.service === serviceName("edge") && s.kind === "server",
      edgeClient: (s: Span) => s.service === serviceName("edge") && s.kind === "client" && s.name.includes("CommandService/PatchEntity"),
      command: (s: Span) => s.service === serviceName("command") && s.kind === "server" && s.name.includes("CommandService/PatchEntity"),
      commandSql: (s: Span) => s.service === serviceName("command") && s.kind === "client" && dbSystem(s) === "postgresql",
      sendCommand: (s: Span) => s.service === serviceName("relay") && s.kind === "producer" && s.name === `send ${prefix}umw.commands.v1`,
      processCommand: (s: Span) => s.service === serviceName("processor") && s.kind === "consumer",
      processorSql: (s: Span) => s.service === serviceName("processor") && s.kind === "client" && dbSystem(s) === "postgresql",
      sendEvent: (s: Span) => s.service === serviceName("relay") && s.kind === "producer" && s.name === `send ${prefix}umw.entity-events.v1`,
      cacheUpdate: (s: Span) => s.service === serviceName("cache-updater") && s.kind === "consumer",
      redis: (s: Span) => s.service === serviceName("cache-updater") && s.kind === "client" && dbSystem(s) === "redis",
      realtime: (s: Span) => s.service === serviceName("realtime") && s.kind === "consumer",
    };
    let seen = "";
    const spans = await waitFor(
      async () => {
        const trace = await fetchTrace(traceId);
        const missing = Object.entries(want).filter(([, match]) => !trace?.some(match)).map(([name]) => name);
        seen = `missing ${missing.join(", ")}; spans: ${(trace ?? []).map((s) => `${s.service}/${s.kind}/${s.name}`).join("; ")}`;
        return missing.length === 0 ? trace : (false as const);
      },
      { what: `every hop of trace ${traceId} in Jaeger`, timeoutMs: 60_000, everyMs: 500 },
    ).catch((error: Error) => assert.fail(`${error.message}: ${seen}`));
    const one = (name: keyof typeof want) => {
      const found = spans.filter(want[name]);
      assert.ok(found.length >= 1, name);
      return found[0]!;
    };
    const edgeServer = one("edgeServer");
    assert.equal(edgeServer.parent, callerSpan, "the edge continues the caller's traceparent");
    assert.equal(one("edgeClient").parent, edgeServer.id, "the edge's gRPC call is inside its HTTP span");
    const command = one("command");
    assert.equal(command.parent, one("edgeClient").id, "CommandService's span is the child of the edge's call");
    assert.ok(spans.filter(want.commandSql).some((s) => s.parent === command.id), "the accepting statement is inside CommandService's span");
    const sendCommand = spans.filter(want.sendCommand).find((s) => s.parent === command.id);
    assert.ok(sendCommand, "the relay's send of the outbox row continues the context stored with it");
    const processCommand = one("processCommand");
    assert.equal(processCommand.parent, sendCommand.id, "the processor continues from the send");
    assert.ok(processCommand.follows, "and links to it (FOLLOWS_FROM in Jaeger)");
    assert.equal(processCommand.tags.get("messaging.destination.name"), `${prefix}umw.commands.v1`);
    assert.ok(spans.filter(want.processorSql).some((s) => s.parent === processCommand.id), "the processor's statements are inside its span");
    const sendEvent = one("sendEvent");
    assert.equal(sendEvent.parent, processCommand.id, "the domain event's send continues from the processor's span");
    const cacheUpdate = one("cacheUpdate");
    assert.equal(cacheUpdate.parent, sendEvent.id, "the cache updater continues from the event's send");
    assert.ok(spans.filter(want.redis).some((s) => s.parent === cacheUpdate.id), "the cache write is inside the cache updater's span");
    assert.equal(one("realtime").parent, sendEvent.id, "the realtime hub continues from the event's send");

    // The request id crossed Kafka twice: on the log lines of the processor and the cache updater.
    for (const name of ["processor", "cache-updater"]) {
      const proc = processes.get(name)!;
      const line = await waitFor(
        () => proc.jsonLines().find((entry) => entry.msg === "message handled" && entry.requestId === requestId),
        { what: `a ${name} log line with request id ${requestId}`, timeoutMs: 10_000, everyMs: 100 },
      );
      assert.equal(line.trace_id, traceId, `${name}'s line carries the trace id`);
      assert.match(String(line.span_id), /^[0-9a-f]{16}$/);
    }
  });

  test("one GET through the Node edge: a cache hit has no Redis span (umw.cache.hit on QueryService's span), a miss has its lookup's", async () => {
    const id = await createNote();
    const url = (entity: string) => `${edge}/v1/tenants/${TENANT}/types/${TYPE}/entities/${entity}`;
    // The cache updater writes the entity through; until then a read may be the one that fills it (REST `Cache-Status`).
    await waitFor(
      async () => {
        const response = await fetch(url(id), { headers: { authorization } });
        await response.arrayBuffer();
        return response.status === 200 && (response.headers.get("cache-status") ?? "").includes("hit");
      },
      { what: "a cache hit on the new note", timeoutMs: 15_000, everyMs: 100 },
    );
    const read = async (entity: string, status: number) => {
      const traceId = randomBytes(16).toString("hex");
      const response = await fetch(url(entity), { headers: { authorization, traceparent: `00-${traceId}-${randomBytes(8).toString("hex")}-01` } });
      assert.equal(response.status, status, await response.clone().text());
      const cacheStatus = response.headers.get("cache-status") ?? "";
      let seen = "";
      const spans = await waitFor(
        async () => {
          const trace = await fetchTrace(traceId);
          seen = (trace ?? []).map((s) => `${s.service}/${s.kind}/${s.name}`).join("; ");
          const ready = trace?.some((s) => s.service === serviceName("edge") && s.kind === "server") && trace.some((s) => s.service === serviceName("query") && s.kind === "server");
          return ready ? trace : false;
        },
        { what: `the read's spans in trace ${traceId}`, timeoutMs: 30_000, everyMs: 250 },
      ).catch((error: Error) => assert.fail(`${error.message}: ${seen}`));
      const edgeClient = spans.find((s) => s.service === serviceName("edge") && s.kind === "client" && s.name.includes("QueryService/GetEntity"));
      const query = spans.find((s) => s.service === serviceName("query") && s.kind === "server" && s.name.includes("QueryService/GetEntity"));
      assert.ok(edgeClient && query, seen);
      assert.equal(query.parent, edgeClient.id, "QueryService's span is the child of the edge's call");
      const redis = spans.filter((s) => s.service === serviceName("query") && s.kind === "client" && dbSystem(s) === "redis");
      return { query, redis, cacheStatus, seen };
    };

    const hit = await read(id, 200);
    assert.match(hit.cacheStatus, /hit/);
    assert.equal(hit.query.tags.get("umw.cache.hit"), true, hit.seen);
    assert.deepEqual(hit.redis.map((s) => s.name), [], `no Redis span for a hit: ${hit.seen}`);

    const miss = await read(`missing-${run}`, 404);
    assert.equal(miss.query.tags.get("umw.cache.hit"), false, miss.seen);
    const lookup = miss.redis.find((s) => s.name === "get");
    assert.ok(lookup, `the missed lookup's Redis span: ${miss.seen}`);
    assert.equal(lookup.parent, miss.query.id, "inside QueryService's span");
  });

  test("a request id that is not a sane token is replaced, and the replacement is echoed and propagated", async () => {
    const id = await createNote();
    const response = await fetch(`${edge}/v1/tenants/${TENANT}/types/${TYPE}/entities/${id}`, {
      method: "PATCH",
      headers: { authorization, "content-type": "application/json", "idempotency-key": `"bad-rid-${run}"`, "x-request-id": "x".repeat(201) },
      body: JSON.stringify({ title: "second" }),
    });
    assert.equal(response.status, 202, await response.clone().text());
    const echoed = response.headers.get("x-request-id");
    assert.match(echoed ?? "", /^[0-9a-f-]{36}$/, "a fresh UUID instead of the 201-character id");
    const processor = processes.get("cache-updater")!;
    await waitFor(() => processor.jsonLines().some((entry) => entry.msg === "message handled" && entry.requestId === echoed), {
      what: "the cache updater's log line with the generated request id",
      timeoutMs: 15_000,
      everyMs: 100,
    });
  });

  test("through Envoy: Envoy's span is in the same trace, the parent of CommandService's", async () => {
    const bin = requireEnvoy();
    const dir = mkdtempSync(join(tmpdir(), "umw-envoy-trace-"));
    const [port, adminPort] = [await freePort(), await freePort()];
    const config = join(dir, "envoy.yaml");
    execFileSync(process.execPath, [
      "bin/umw.mjs", "envoy-config", "--out", config, "--certs", certs.dir, "--admin-port", String(adminPort), "--port", String(port),
      "--descriptor", resolve("gen/umw.binpb"), "--query", `127.0.0.1:${ports.UMW_QUERY_PORT}`, "--command", `127.0.0.1:${ports.UMW_COMMAND_PORT}`,
      "--realtime", `127.0.0.1:${ports.UMW_REALTIME_PORT}`, "--policy", `127.0.0.1:${ports.UMW_POLICY_PORT}`, "--ratelimit", "", "--otlp", JAEGER_OTLP.replace("http://", ""), "--trace-service", serviceName("envoy"),
      // Envoy checks the same tokens as the Node edge: the dev issuer's, its keys fetched from the edge.
      "--auth-issuer", edge, "--auth-jwks", `${edge}/.well-known/jwks.json`,
    ]);
    const envoy: Proc = startProcess(bin, ["-c", config, "--concurrency", "1", "--log-level", "warn", "--base-id", String(port)]);
    try {
      await waitFor(
        async () => {
          assert.equal(envoy.child.exitCode, null, `Envoy exited:\n${envoy.output().slice(-3000)}`);
          return (await clusterHosts(adminPort, "command").catch(() => [])).some((host) => host.healthFlags === "healthy");
        },
        { what: "Envoy to see CommandService healthy", timeoutMs: 30_000, everyMs: 100 },
      );
      const id = await createNote();
      // Envoy checks tokens itself (jwt_authn with the edge's JWKS): none is 401 there.
      const anonymous = await fetch(`http://127.0.0.1:${port}/v1/tenants/${TENANT}/types/${TYPE}/entities/${id}`);
      assert.equal(anonymous.status, 401, await anonymous.text());
      const traceId = randomBytes(16).toString("hex");
      const callerSpan = randomBytes(8).toString("hex");
      const response = await fetch(`http://127.0.0.1:${port}/v1/tenants/${TENANT}/types/${TYPE}/entities/${id}`, {
        method: "PATCH",
        headers: { authorization, "content-type": "application/json", "idempotency-key": `"envoy-${run}"`, traceparent: `00-${traceId}-${callerSpan}-01` },
        body: JSON.stringify({ done: false }),
      });
      assert.equal(response.status, 202, await response.clone().text());
      let seen = "";
      const spans = await waitFor(
        async () => {
          const trace = await fetchTrace(traceId);
          seen = (trace ?? []).map((s) => `${s.service}/${s.kind}/${s.name}`).join("; ");
          const ready = trace?.some((s) => s.service === serviceName("envoy")) && trace.some((s) => s.service === serviceName("cache-updater"));
          return ready ? trace : false;
        },
        { what: `Envoy's and the services' spans in trace ${traceId}`, timeoutMs: 60_000, everyMs: 500 },
      ).catch((error: Error) => assert.fail(`${error.message}: ${seen}`));
      const envoySpans = new Map(spans.filter((s) => s.service === serviceName("envoy")).map((s) => [s.id, s]));
      assert.ok([...envoySpans.values()].some((s) => s.parent === callerSpan), `Envoy continues the caller's traceparent: ${seen}`);
      const command = spans.find((s) => s.service === serviceName("command") && s.kind === "server");
      assert.ok(command, seen);
      assert.ok(envoySpans.has(command.parent!), `CommandService's span is the child of one of Envoy's: ${seen}`);
    } finally {
      await envoy.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
