// Metrics of a live mesh: `umw serve all canary --embedded` in a child process (the real edge,
// query, command, realtime, relay, processor, cache updater and canary; embedded stores). Checks
// that /metrics is on the metrics listener only (not the public edge), that requests naming random
// tenants, ids and paths (each with a token of its tenant from the child's dev issuer) do not add
// series, `umw status` and `umw canary` against it, and a real
// Prometheus (scripts/infra.sh prometheus) scraping it finds every series the SLO rules and the
// Grafana dashboard use.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { networkInterfaces, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import { connect } from "node:net";
import { parseMetrics } from "../../runtime/prometheus-text.js";
import { ALL_SERVICES } from "../../services/registry.js";
import { devAuthorization, embeddedEnv } from "../support/embedded-env.js";
import { freePort, freeServicePorts } from "../support/ports.js";
import { dashboardExpressions, metricNamesOf, ruleExpressions, RULES_FILE } from "../support/promql.js";
import { waitFor } from "../support/wait.js";

const dir = mkdtempSync(join(tmpdir(), "umw-metrics-live-"));
const certsDir = join(dir, "certs");
let ports: Record<string, number>;
let env: NodeJS.ProcessEnv;
let child: ChildProcess;
let output = "";
let edge: string;
let metricsUrl: string;
/** `Authorization` of the child's dev issuer for tenant acme. */
let acme: string;

const random = () => randomBytes(6).toString("hex");

/** The series of the listener, without Node's own process metrics (GC kinds and handle types come and go with the runtime). */
async function meshSeries(): Promise<string[]> {
  const text = await (await fetch(metricsUrl)).text();
  return text.split("\n").filter((line) => line && !line.startsWith("#") && !/^(nodejs_|process_)/.test(line)).map((line) => line.slice(0, line.lastIndexOf(" ")));
}

/** Runs the CLI in a child without blocking this process's event loop (the test drives load meanwhile). */
async function umw(args: string[], extraEnv: Record<string, string> = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const cli = spawn(process.execPath, ["bin/umw.mjs", ...args], { env: { ...env, UMW_LOG_LEVEL: "silent", ...extraEnv }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  cli.stdout!.on("data", (chunk) => (stdout += chunk));
  cli.stderr!.on("data", (chunk) => (stderr += chunk));
  const timer = setTimeout(() => cli.kill("SIGKILL"), 60_000);
  const [status] = (await once(cli, "exit")) as [number | null];
  clearTimeout(timer);
  return { status, stdout, stderr };
}

describe("metrics of a live mesh", () => {
  before(async () => {
    ports = await freeServicePorts();
    env = embeddedEnv(ports, certsDir, { UMW_CANARY_INTERVAL_MS: "250", UMW_METRICS_HOST: "127.0.0.1" });
    edge = `http://127.0.0.1:${ports.UMW_EDGE_PORT}`;
    metricsUrl = `http://127.0.0.1:${ports.UMW_METRICS_PORT}/metrics`;
    // Minted before the child starts: the dev issuer's key it makes is the one the child loads.
    acme = await devAuthorization(certsDir, ports.UMW_EDGE_PORT!, "acme");
    child = spawn(process.execPath, ["bin/umw.mjs", "serve", "all", "canary", "--embedded"], { env, stdio: ["ignore", "pipe", "pipe"] });
    child.stdout!.on("data", (chunk) => (output += chunk));
    child.stderr!.on("data", (chunk) => (output += chunk));
    await waitFor(() => output.includes("umw ready") || child.exitCode !== null, { what: "umw ready", timeoutMs: 90_000, everyMs: 100 });
    assert.equal(child.exitCode, null, `umw exited early:\n${output}`);
    // The in-process canary has gone through once: every stage of the write path has run.
    await waitFor(async () => parseMetrics(await (await fetch(metricsUrl)).text()).some((s) => s.name === "umw_canary_runs_total" && s.labels.result === "success" && s.value > 0), {
      what: "a successful canary transaction",
      timeoutMs: 30_000,
      everyMs: 200,
    });
  });

  after(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await once(child, "exit");
    }
    rmSync(dir, { recursive: true, force: true });
  });

  test("/metrics is served by the metrics listener on loopback, not by the public edge", async () => {
    assert.match(output, new RegExp(`"metrics":"http://127.0.0.1:${ports.UMW_METRICS_PORT}/metrics","msg":"metrics listening"`));
    const listener = await fetch(metricsUrl);
    assert.equal(listener.status, 200);
    assert.match(listener.headers.get("content-type") ?? "", /^text\/plain; version=0.0.4/);
    const onEdge = await fetch(`${edge}/metrics`);
    assert.equal(onEdge.status, 404);
    assert.doesNotMatch(await onEdge.text(), /# TYPE/);
    // Not reachable on another address of this machine (bound to 127.0.0.1 only).
    const external = Object.values(networkInterfaces()).flat().find((address) => address && address.family === "IPv4" && !address.internal);
    if (external) {
      const error = await new Promise<Error | undefined>((done) => {
        const socket = connect(ports.UMW_METRICS_PORT!, external.address);
        socket.once("connect", () => (socket.destroy(), done(undefined)));
        socket.once("error", done);
      });
      assert.ok(error, `the metrics listener answered on ${external.address}`);
    }
  });

  test("random tenants, ids and paths through the edge and the query service do not add series", async (t) => {
    const drive = async (count: number) => {
      const tenants: string[] = [];
      for (let i = 0; i < count; i++) {
        const tenant = `t-${random()}`;
        tenants.push(tenant);
        // A token of the tenant, so the reads pass authentication and the policy and reach the query service.
        const authorization = await devAuthorization(certsDir, ports.UMW_EDGE_PORT!, tenant);
        const headers = { authorization };
        const responses = await Promise.all([
          fetch(`${edge}/v1/tenants/${tenant}/types/todo/entities/${random()}`, { headers }),
          fetch(`${edge}/v1/tenants/${tenant}/types/todo/entities?pageSize=2`, { headers }),
          fetch(`${edge}/no/such/${random()}`, { headers }),
          fetch(`${edge}/v1/tenants/${tenant}/types/x${random()}/entities/${random()}`, { headers }),
          fetch(`${edge}/umw.v1.QueryService/GetEntity`, { method: "POST", headers: { ...headers, "content-type": "application/json" }, body: JSON.stringify({ tenant, type: "todo", id: random() }) }),
          // A path that does not decode: answered 400, counted as _unmatched (and no crash while counting it).
          fetch(`${edge}/v1/tenants/${tenant}/types/todo/entities/%E0%A4%A${random()}`, { headers }),
        ]);
        for (const response of responses) await response.arrayBuffer();
        // Unknown entity, a list, no route, an unknown type (UNKNOWN_RESOURCE_TYPE), unknown entity over Connect, malformed path.
        assert.deepEqual(responses.map((r) => r.status), [404, 200, 404, 404, 404, 400]);
      }
      return tenants;
    };
    await drive(20);
    const baseline = await meshSeries();
    const tenants = await drive(100);
    const afterwards = await meshSeries();
    const added = afterwards.filter((series) => !baseline.includes(series));
    t.diagnostic(`${baseline.length} series after 20 rounds, ${afterwards.length} after 100 more (600 requests, 100 random tenants)`);
    assert.deepEqual(added, [], `series added by 100 rounds of random tenants: ${added.slice(0, 10).join("\n")}`);
    const text = await (await fetch(metricsUrl)).text();
    for (const tenant of tenants) assert.ok(!text.includes(tenant), `tenant ${tenant} appears in the metrics`);
    assert.match(text, /http_server_request_duration_seconds_count\{http_request_method="GET",http_route="\/v1\/tenants\/\{tenant\}\/types\/\{type\}\/entities\/\{id\}",http_response_status_code="404"\} \d+/);
    assert.match(text, /umw_query_cache_negative_hits_total\{tenant="_other",type="todo"\} \d+/);
  });

  test("umw status --json: every service up, golden signals and the pipeline; a dead target is down", async () => {
    // Reads go on for as long as the status command runs (it starts up, scrapes, waits, scrapes).
    let running = true;
    const load = (async () => {
      while (running) await (await fetch(`${edge}/v1/tenants/acme/types/todo/entities/${random()}`, { headers: { authorization: acme } })).arrayBuffer();
    })();
    const result = await umw(["status", "--json", "--interval", "1500", "--targets", `127.0.0.1:${ports.UMW_METRICS_PORT}`]);
    running = false;
    await load;
    assert.equal(result.status, 0, result.stderr);
    const status = JSON.parse(result.stdout);
    assert.equal(status.processes.length, 1);
    assert.equal(status.processes[0].up, true);
    // `serve all canary`: every service of `serve all`, and the canary.
    assert.deepEqual([...status.processes[0].services].sort(), [...ALL_SERVICES, "canary"].sort());
    for (const service of ["umw.v1.QueryService", "umw.v1.CommandService", "umw.v1.RealtimeService", "edge (http)"]) {
      assert.ok(status.signals[service], `no signals for ${service}`);
      assert.ok(status.signals[service].total > 0, `${service} counted nothing`);
    }
    assert.ok(status.signals["edge (http)"].rate > 0, "the edge had load during the window");
    assert.ok(status.signals["umw.v1.QueryService"].p95 > 0);
    assert.equal(status.pipeline.outboxBacklog >= 0, true);
    assert.ok(status.pipeline.consumerLagSeconds["umw-processor"] >= 0, JSON.stringify(status.pipeline));
    assert.ok(status.pipeline.canaryLastSuccessAgeSeconds < 30, JSON.stringify(status.pipeline));

    const dead = await freePort();
    const down = await umw(["status", "--json", "--interval", "100", "--targets", `127.0.0.1:${dead}`]);
    assert.equal(down.status, 1);
    assert.equal(JSON.parse(down.stdout).processes[0].up, false);

    const table = await umw(["status", "--once", "--interval", "200", "--targets", `127.0.0.1:${ports.UMW_METRICS_PORT}`]);
    assert.equal(table.status, 0, table.stderr);
    assert.match(table.stdout, /umw\.v1\.QueryService\s+\d/);
    assert.match(table.stdout, /outbox backlog \d+ rows/);
  });

  test("umw canary --once: a whole transaction succeeds; with the query service unreachable it fails at 'visible'", async () => {
    const ok = await umw(["canary", "--once", "--json"]);
    assert.equal(ok.status, 0, `${ok.stdout}${ok.stderr}`);
    const result = JSON.parse(ok.stdout);
    assert.equal(result.ok, true);
    for (const stage of ["accept", "applied", "visible", "received"]) assert.ok(result.seconds[stage] > 0, `${stage}: ${JSON.stringify(result.seconds)}`);
    assert.ok(result.seconds.accept <= result.seconds.applied && result.seconds.applied <= result.seconds.visible);

    const broken = await umw(["canary", "--once", "--json"], { UMW_QUERY_PORT: String(await freePort()), UMW_CANARY_TIMEOUT_MS: "5000" });
    assert.equal(broken.status, 1, broken.stdout);
    const failure = JSON.parse(broken.stdout);
    assert.equal(failure.ok, false);
    assert.equal(failure.failedStage, "visible");
    assert.ok(failure.seconds.applied > 0);
  });

  test("Prometheus scrapes the listener and finds every series the SLO rules and the dashboard use", async (t) => {
    // The backend latency histogram has series only once a read went to the backend: the canary's
    // reads are cache hits (the cache updater wrote the entity first), so this test makes a miss itself.
    const miss = await fetch(`${edge}/v1/tenants/acme/types/todo/entities/${random()}`, { headers: { authorization: acme } });
    assert.equal(miss.status, 404, await miss.text());
    const port = await freePort();
    const promDir = join(dir, "prometheus");
    const config = join(dir, "prometheus.yml");
    writeFileSync(
      config,
      [
        "global: { scrape_interval: 1s, evaluation_interval: 1s }",
        `rule_files: [${JSON.stringify(resolve(RULES_FILE))}]`,
        "scrape_configs:",
        "  - job_name: umw",
        `    static_configs: [{ targets: ["127.0.0.1:${ports.UMW_METRICS_PORT}"] }]`,
      ].join("\n"),
    );
    const prometheus = spawn("prometheus", [`--config.file=${config}`, `--storage.tsdb.path=${promDir}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: ["ignore", "ignore", "pipe"] });
    let log = "";
    prometheus.stderr!.on("data", (chunk) => (log += chunk));
    const spawnError = await Promise.race([once(prometheus, "error").then(([error]) => error as Error), once(prometheus, "spawn").then(() => undefined)]);
    assert.ok(!spawnError, `prometheus is not installed (scripts/infra.sh prometheus installs it): ${spawnError?.message}`);
    try {
      const api = async (path: string) => {
        const response = await fetch(`http://127.0.0.1:${port}/api/v1/${path}`).catch(() => undefined);
        return response?.ok ? ((await response.json()) as { data: any }).data : undefined;
      };
      await waitFor(async () => (await api("targets"))?.activeTargets?.[0]?.health === "up", { what: `the target up in Prometheus (log: ${log.slice(-500)})`, timeoutMs: 30_000, everyMs: 250 });
      // Two scrapes, so rates have something to work on, and the rules evaluated.
      await waitFor(async () => (await api(`query?query=${encodeURIComponent("count(count_over_time(up[1m]) >= 2)")}`))?.result?.length, { what: "two scrapes", timeoutMs: 30_000, everyMs: 250 });

      // Counters whose label values only an event gives (who refuses, and why): exported with
      // HELP and TYPE (Prometheus knows their metadata) but no series until the first refusal.
      const eventOnly = new Set(["umw_ratelimit_refusals_total", "umw_policy_denials_total"]);
      const names = [...new Set([...ruleExpressions(), ...dashboardExpressions()].flatMap(metricNamesOf))].sort();
      assert.ok(names.length >= 30, `only ${names.length} metric names in the rules and the dashboard`);
      const missing: string[] = [];
      for (const name of names) {
        if (eventOnly.has(name)) {
          const metadata = await api(`metadata?metric=${name}`);
          if (!metadata?.[name]) missing.push(`${name} (no metadata)`);
          continue;
        }
        const series = await api(`series?match[]=${encodeURIComponent(name)}`);
        if (!series?.length) missing.push(name);
      }
      t.diagnostic(`${names.length} metric names checked: ${names.join(", ")}`);
      assert.deepEqual(missing, [], "metrics the rules or the dashboard use that the mesh does not export");

      const groups = (await api("rules")).groups as { name: string; rules: { health: string; name: string; lastError?: string }[] }[];
      assert.deepEqual(groups.map((group) => group.name).sort(), ["umw-slo-alerts", "umw-slo-recording"]);
      for (const rule of groups.flatMap((group) => group.rules)) assert.notEqual(rule.health, "err", `${rule.name}: ${rule.lastError}`);
      // Recording rules produce values from the live scrape.
      for (const record of ["umw:rpc_server_requests:rate5m", "umw:consumer_lag_seconds:max", "umw:outbox_oldest_age_seconds:max", "umw:accept_to_visible_seconds:p95_5m"]) {
        await waitFor(async () => (await api(`query?query=${encodeURIComponent(record)}`))?.result?.length, { what: `a value of ${record}`, timeoutMs: 30_000, everyMs: 500 });
      }
    } finally {
      prometheus.kill("SIGTERM");
      if (prometheus.exitCode === null) await once(prometheus, "exit");
    }
  });
});
