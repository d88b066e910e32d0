import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, loadConfig, serviceAddress } from "./config.js";

test("defaults need no environment", () => {
  const config = loadConfig({});
  assert.equal(config.queryPort, 7001);
  assert.deepEqual(config.kafkaBrokers, ["127.0.0.1:19092"]);
  assert.equal(serviceAddress(config, "query"), "127.0.0.1:7001");
});

test("a bad value is named with its variable", () => {
  assert.throws(() => loadConfig({ UMW_QUERY_PORT: "seventy" }), (error: Error) => error instanceof ConfigError && /UMW_QUERY_PORT="seventy"/.test(error.message));
  assert.throws(() => loadConfig({ UMW_PG_URL: "mysql://x" }), /UMW_PG_URL.*postgres/);
  assert.throws(() => loadConfig({ UMW_KAFKA_BROKERS: "nohostport" }), /UMW_KAFKA_BROKERS.*host:port/);
  assert.throws(() => loadConfig({ UMW_RESOURCES: "{not json" }), /UMW_RESOURCES.*not JSON/);
  assert.throws(() => loadConfig({ UMW_RESOURCES: '{"todo":{"cache":{"ttlMs":-1}}}' }), /todo\.cache\.ttlMs/);
});

test("a config file is read, and the environment overrides it", () => {
  const dir = mkdtempSync(join(tmpdir(), "umw-config-"));
  try {
    const path = join(dir, "umw.yaml");
    writeFileSync(path, "queryPort: 7100\nresources:\n  todo: {}\n");
    const fromFile = loadConfig({ UMW_CONFIG: path });
    assert.equal(fromFile.queryPort, 7100);
    assert.equal(fromFile.resources.todo?.cache.ttlMs, 300_000);
    assert.equal(loadConfig({ UMW_CONFIG: path, UMW_QUERY_PORT: "7200" }).queryPort, 7200);
    writeFileSync(path, "queryPortt: 1\n");
    assert.throws(() => loadConfig({ UMW_CONFIG: path }), /unknown setting\(s\) queryPortt/);
    assert.throws(() => loadConfig({ UMW_CONFIG: join(dir, "missing.yaml") }), /cannot read the file/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("UMW_EDGE_UPSTREAM_CLIENT: grpc-js by default, lean when asked, nothing else", () => {
  assert.equal(loadConfig({}).edgeUpstreamClient, "lean");
  assert.equal(loadConfig({ UMW_EDGE_UPSTREAM_CLIENT: "lean" }).edgeUpstreamClient, "lean");
  assert.throws(() => loadConfig({ UMW_EDGE_UPSTREAM_CLIENT: "fast" }), (error: Error) => error instanceof ConfigError && /UMW_EDGE_UPSTREAM_CLIENT/.test(error.message));
});
