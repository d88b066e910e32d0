import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import pg from "pg";
import { credentials, loadPackageDefinition, type GrpcObject, type ServiceClientConstructor } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { protoPath as healthProtoPath } from "grpc-health-check";
import { createTestDatabase, type TestDatabase } from "./support/database.js";
import { testCerts, type TestCerts } from "./support/certs.js";
import { freeServicePorts } from "./support/ports.js";
import { runId } from "./support/env.js";
import { MESH_IDENTITIES } from "../services/registry.js";

const UMW = "bin/umw.mjs";

function umw(args: string[], env: NodeJS.ProcessEnv = {}) {
  const result = spawnSync(process.execPath, [UMW, ...args], { env: { ...process.env, ...env }, encoding: "utf8", timeout: 60_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe("umw CLI", () => {
  let db: TestDatabase;
  let certs: TestCerts;

  before(async () => {
    db = await createTestDatabase();
    certs = testCerts(MESH_IDENTITIES);
  });
  after(async () => {
    await db.drop();
    certs.remove();
  });

  test("usage and unknown commands exit non-zero", () => {
    assert.equal(umw([]).code, 2);
    const unknown = umw(["frobnicate"]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command "frobnicate"/);
    const badService = umw(["serve", "nope"]);
    assert.equal(badService.code, 2);
    assert.match(badService.stderr, /unknown service\(s\) nope/);
  });

  test("a bad config value is named and exits 1", () => {
    const result = umw(["serve", "query"], { UMW_QUERY_PORT: "not-a-port" });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /UMW_QUERY_PORT="not-a-port"/);
  });

  test("migrate applies each migration once and records it", async () => {
    // createTestDatabase already migrated; a second run finds nothing to do.
    const again = umw(["migrate"], { UMW_PG_URL: db.url });
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /up to date/);
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const { rows } = await client.query("SELECT version, name FROM umw_schema_migrations ORDER BY version");
    await client.end();
    assert.ok(rows.length >= 1);
    assert.deepEqual(rows[0], { version: 1, name: "core" });
  });

  test("migrate against a dead Postgres fails clearly", () => {
    const result = umw(["migrate"], { UMW_PG_URL: "postgres://umw:umw@127.0.0.1:1/umw" });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /ECONNREFUSED|connect/);
  });

  test("serve all: every service answers Health over mTLS, SIGTERM stops them cleanly", async () => {
    const ports = await freeServicePorts();
    const child = spawn(process.execPath, [UMW, "serve", "all"], {
      env: {
        ...process.env,
        ...Object.fromEntries(Object.entries(ports).map(([key, value]) => [key, String(value)])),
        UMW_CERTS_DIR: certs.dir,
        UMW_AUTH_DEV_KEYS_DIR: `${certs.dir}/dev-issuer`,
        UMW_PG_URL: db.url,
        UMW_PG_REPLICA_URL: db.replicaUrl,
        UMW_TOPIC_PREFIX: `t${runId()}.`,
        UMW_CONFIG: "config/demo.yaml",
        UMW_LOG_LEVEL: "info",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk) => (output += chunk));
    child.stderr.on("data", (chunk) => (output += chunk));
    try {
      const ready = Date.now() + 45_000;
      while (!output.includes("umw ready")) {
        assert.ok(child.exitCode === null, `umw exited early:\n${output}`);
        assert.ok(Date.now() < ready, `umw not ready in time:\n${output}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const definition = loadSync(healthProtoPath, { enums: String });
      const Health = ((loadPackageDefinition(definition) as GrpcObject).grpc as any).health.v1.Health as ServiceClientConstructor;
      const cli = certs.identity("cli");
      for (const [name, port] of Object.entries(ports)) {
        if (name === "UMW_EDGE_PORT" || name === "UMW_METRICS_PORT") continue;
        const client = new Health(`127.0.0.1:${port}`, credentials.createSsl(cli.ca, cli.key, cli.cert));
        const status = await new Promise<string>((resolve, reject) =>
          client.check!({ service: "" }, { deadline: Date.now() + 5_000 }, (error: Error | null, response: { status: string }) =>
            error ? reject(error) : resolve(response.status),
          ),
        );
        assert.equal(status, "SERVING", `${name}=${port}`);
        client.close();
      }
      const edge = await fetch(`http://127.0.0.1:${ports.UMW_EDGE_PORT}/healthz`);
      assert.equal(edge.status, 200);
      await edge.arrayBuffer();
    } finally {
      child.kill("SIGTERM");
      const [code] = await once(child, "exit");
      assert.equal(code, 0, output);
      assert.match(output, /"msg":"stopped"/);
    }
  });
});
