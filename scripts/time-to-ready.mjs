#!/usr/bin/env node
// Time from spawning a umw process to its being ready, as docs/architecture.md quotes it.
//   node scripts/time-to-ready.mjs embedded [runs]   npm start (scripts/start-embedded.sh) until the edge's /readyz is 200
//   node scripts/time-to-ready.mjs query [runs]      `umw serve query` (real Redis/Postgres: source scripts/infra-env.sh) until Health says SERVING
// Free ports and a temporary certificate folder each run; bin/umw.mjs picks dist/ or the sources.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { credentials, loadPackageDefinition } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { protoPath } from "grpc-health-check";

const [mode = "embedded", runsArg = "3"] = process.argv.slice(2);
const DEADLINE_MS = 120_000;

async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function ports() {
  const names = ["QUERY", "COMMAND", "REALTIME", "RELAY", "PROCESSOR", "CACHE_UPDATER", "EDGE", "METRICS"];
  const env = {};
  for (const name of names) env[`UMW_${name}_PORT`] = String(await freePort());
  return env;
}

const health = loadPackageDefinition(loadSync(protoPath, { enums: String })).grpc.health.v1.Health;

async function readyEmbedded(env) {
  try {
    const response = await fetch(`http://127.0.0.1:${env.UMW_EDGE_PORT}/readyz`);
    return response.status === 200;
  } catch {
    return false;
  }
}

function readyQuery(env, certs) {
  const creds = credentials.createSsl(readFileSync(join(certs, "ca.crt")), readFileSync(join(certs, "cli.key")), readFileSync(join(certs, "cli.crt")));
  const client = new health(`127.0.0.1:${env.UMW_QUERY_PORT}`, creds, { "grpc.ssl_target_name_override": "query" });
  return new Promise((resolve) => {
    client.Check({ service: "" }, { deadline: Date.now() + 500 }, (error, response) => {
      client.close();
      resolve(!error && response.status === "SERVING");
    });
  });
}

async function once() {
  const certs = mkdtempSync(join(tmpdir(), "umw-ttr-"));
  const env = { ...process.env, ...(await ports()), UMW_CERTS_DIR: certs, UMW_LOG_LEVEL: "warn" };
  spawnSync(process.execPath, ["bin/umw.mjs", "certs"], { env, stdio: "ignore" });
  const started = performance.now();
  const child = mode === "embedded" ? spawn("scripts/start-embedded.sh", [], { env, stdio: ["ignore", "ignore", "pipe"] }) : spawn(process.execPath, ["bin/umw.mjs", "serve", "query"], { env, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (chunk) => (stderr = (stderr + chunk).slice(-2_000)));
  let exited = false;
  child.on("exit", () => (exited = true));
  try {
    while (performance.now() - started < DEADLINE_MS) {
      if (exited) throw new Error(`${mode}: the process exited before it was ready:\n${stderr}`);
      if (mode === "embedded" ? await readyEmbedded(env) : await readyQuery(env, certs)) return performance.now() - started;
      await sleep(25);
    }
    throw new Error(`${mode}: not ready within ${DEADLINE_MS} ms`);
  } finally {
    child.kill("SIGTERM");
    await new Promise((resolve) => (exited ? resolve() : child.on("exit", resolve)));
    rmSync(certs, { recursive: true, force: true });
  }
}

const times = [];
for (let run = 0; run < Number(runsArg); run++) times.push(await once());
const sorted = [...times].sort((a, b) => a - b);
console.log(`${mode}: ready in ${times.map((ms) => `${Math.round(ms)} ms`).join(", ")} (median ${Math.round(sorted[Math.floor(sorted.length / 2)])} ms); load average ${(await import("node:os")).loadavg().map((l) => l.toFixed(1)).join(" ")}`);
