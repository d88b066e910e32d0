// The metrics listener behind mTLS (UMW_METRICS_TLS): only clients with a certificate of the mesh
// CA can scrape it; plain HTTP, no certificate and another CA's certificate are refused; `umw status`
// scrapes it as the mesh identity `cli`.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { request } from "node:https";
import { counter, Registry, serveMetrics, type MetricsServer } from "../../runtime/metrics.js";
import { scrape } from "../../runtime/prometheus-text.js";
import { testCerts, type TestCerts } from "../support/certs.js";

let certs: TestCerts;
let stranger: TestCerts;
let listener: MetricsServer;
const registry = new Registry();

before(async () => {
  certs = testCerts(["query", "cli"]);
  stranger = testCerts(["cli"]);
  counter(registry, { name: "t_mtls_total", help: "A counter." }).inc(3);
  const query = certs.identity("query");
  listener = await serveMetrics("127.0.0.1", 0, registry, query);
});

after(async () => {
  await listener.close();
  certs.remove();
  stranger.remove();
});

function get(options: { key?: Buffer; cert?: Buffer }): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(listener.url, { ...options, ca: certs.identity("cli").ca, checkServerIdentity: () => undefined }, (response) => {
      response.resume();
      resolve(response.statusCode ?? 0);
    });
    req.on("error", reject);
    req.end();
  });
}

test("a mesh client certificate scrapes; plain HTTP, no certificate and another CA's are refused", async () => {
  assert.match(listener.url, /^https:\/\/127\.0\.0\.1:\d+\/metrics$/);
  const cli = certs.identity("cli");
  const samples = await scrape(listener.url, undefined, cli);
  assert.equal(samples.find((s) => s.name === "t_mtls_total")?.value, 3);
  await assert.rejects(fetch(listener.url.replace("https:", "http:")));
  await assert.rejects(get({}), "no client certificate");
  const other = stranger.identity("cli");
  await assert.rejects(get({ key: other.key, cert: other.cert }), "a certificate of another CA");
  assert.equal(await get({ key: cli.key, cert: cli.cert }), 200);
});

test("umw status --json scrapes an mTLS listener as `cli` (and cannot without UMW_METRICS_TLS)", async () => {
  const run = async (tls: string) => {
    const env = { ...Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("UMW_"))), UMW_CERTS_DIR: certs.dir, UMW_METRICS_TLS: tls, UMW_LOG_LEVEL: "silent" };
    const child = spawn(process.execPath, ["bin/umw.mjs", "status", "--json", "--interval", "100", "--targets", `127.0.0.1:${listener.port}`], { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    child.stdout!.on("data", (chunk) => (stdout += chunk));
    const [code] = await once(child, "exit");
    return { code, status: JSON.parse(stdout) };
  };
  const withTls = await run("true");
  assert.equal(withTls.code, 0);
  assert.equal(withTls.status.processes[0].up, true);
  const plain = await run("false");
  assert.equal(plain.code, 1);
  assert.equal(plain.status.processes[0].up, false);
});
