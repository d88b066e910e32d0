import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { MESH_IDENTITIES } from "../../services/registry.js";
import { testCerts, type TestCerts } from "../support/certs.js";
import { requireEnvoy } from "./support.js";

function umw(args: string[]) {
  const result = spawnSync(process.execPath, ["bin/umw.mjs", ...args], { encoding: "utf8", timeout: 60_000 });
  assert.equal(result.status, 0, result.stderr);
  return result.stdout;
}

/** `envoy --mode validate`: Envoy loads the whole configuration (certificates, descriptor set) without serving. */
function validate(config: string): { ok: boolean; output: string } {
  const result = spawnSync(requireEnvoy(), ["--mode", "validate", "-c", config, "--use-dynamic-base-id", "--log-level", "warn"], { encoding: "utf8", timeout: 60_000 });
  return { ok: result.status === 0, output: `${result.stdout}${result.stderr}` };
}

describe("the Envoy configurations umw produces", () => {
  let certs: TestCerts;
  let dir: string;
  before(() => {
    certs = testCerts(MESH_IDENTITIES);
    dir = mkdtempSync(join(tmpdir(), "umw-envoy-config-"));
  });
  after(() => {
    certs.remove();
    rmSync(dir, { recursive: true, force: true });
  });

  test("envoy/envoy.yaml and envoy/bootstrap.yaml are what `umw envoy-config` renders", () => {
    assert.equal(readFileSync("envoy/envoy.yaml", "utf8"), umw(["envoy-config"]), "envoy/envoy.yaml is stale: run `umw envoy-config --out envoy/envoy.yaml`");
    assert.equal(readFileSync("envoy/bootstrap.yaml", "utf8"), umw(["envoy-config", "--bootstrap"]), "envoy/bootstrap.yaml is stale: run `umw envoy-config --bootstrap --out envoy/bootstrap.yaml`");
  });

  test("the static configuration passes envoy --mode validate, with its certificates and descriptor set in place", () => {
    // envoy.yaml itself, with /certs and /etc/umw/umw.binpb pointed at this machine's files.
    const config = readFileSync("envoy/envoy.yaml", "utf8").replaceAll("/certs/", `${certs.dir}/`).replaceAll("/etc/umw/umw.binpb", resolve("gen/umw.binpb"));
    const path = join(dir, "envoy.yaml");
    writeFileSync(path, config);
    const result = validate(path);
    assert.ok(result.ok, result.output);
  });

  test("with tracing (--otlp), the static configuration passes envoy --mode validate and exports to the collector's cluster", () => {
    const path = join(dir, "envoy-tracing.yaml");
    umw(["envoy-config", "--certs", certs.dir, "--descriptor", resolve("gen/umw.binpb"), "--otlp", "127.0.0.1:14317", "--trace-sample-ratio", "0.25", "--out", path]);
    const config = readFileSync(path, "utf8");
    assert.match(config, /name: envoy\.tracers\.opentelemetry/);
    assert.match(config, /random_sampling:\n\s+value: 25/);
    assert.match(config, /- name: otlp-collector/);
    const result = validate(path);
    assert.ok(result.ok, result.output);
  });

  test("the ADS bootstrap passes envoy --mode validate", () => {
    const path = join(dir, "bootstrap.yaml");
    umw(["envoy-config", "--bootstrap", "--certs", certs.dir, "--control-plane", "127.0.0.1:7007", "--out", path]);
    const result = validate(path);
    assert.ok(result.ok, result.output);
  });

  test("validation catches a broken configuration (the check can fail)", () => {
    const path = join(dir, "broken.yaml");
    // The CORS matcher that the hand-written envoy.yaml had: an empty prefix violates min_len 1.
    const broken = readFileSync("envoy/envoy.yaml", "utf8")
      .replaceAll("/certs/", `${certs.dir}/`)
      .replaceAll("/etc/umw/umw.binpb", resolve("gen/umw.binpb"))
      .replace(/(\n\s+)allow_methods: /, '$1allow_origin_string_match:$1  - prefix: ""$1allow_methods: ');
    assert.notEqual(broken, readFileSync("envoy/envoy.yaml", "utf8"));
    writeFileSync(path, broken);
    const result = validate(path);
    assert.equal(result.ok, false);
    assert.match(result.output, /Prefix|min_len|length/i);
  });
});
