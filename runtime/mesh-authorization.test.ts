import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "./config.js";
import { Code } from "./errors.js";
import { DEFAULT_MESH_AUTHZ, MeshAuthorization, parseMeshAuthz } from "./mesh-authorization.js";

const defaults = loadConfig({ UMW_CONFIG: "" });
const authz = new MeshAuthorization(defaults.meshAuthz, defaults.trustedPrincipalPeers);
const call = (peer: string | undefined, method: string, headers: Record<string, string> = {}) => authz.check({ peer, method, headers });

test("the built-in table: users' methods only from the edges and the cli, registration only from the routed services", () => {
  assert.deepEqual(defaults.meshAuthz, DEFAULT_MESH_AUTHZ);
  for (const peer of ["edge", "envoy", "cli"]) {
    for (const method of ["umw.v1.CommandService/CreateEntity", "umw.v1.QueryService/GetEntity", "umw.v1.RealtimeService/Subscribe"]) assert.equal(call(peer, method), undefined, `${peer} ${method}`);
  }
  for (const peer of ["query", "command", "realtime", "relay", "processor", "cache-updater", "control-plane", "stranger"]) {
    const denied = call(peer, "umw.v1.CommandService/CreateEntity");
    assert.equal(denied?.code, Code.PERMISSION_DENIED, peer);
    assert.equal(denied?.reason, "MESH_METHOD_DENIED");
    assert.deepEqual(denied?.metadata, { peer, method: "umw.v1.CommandService/CreateEntity" });
  }
  for (const peer of ["query", "command", "realtime"]) assert.equal(call(peer, "umw.controlplane.v1.RegistrationService/Register"), undefined);
  for (const peer of ["edge", "cli", "processor"]) assert.equal(call(peer, "umw.controlplane.v1.RegistrationService/Register")?.reason, "MESH_METHOD_DENIED");
  assert.equal(call("envoy", "envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"), undefined);
  assert.equal(call("query", "envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources")?.reason, "MESH_METHOD_DENIED");
});

test("only the edges may assert a principal; anyone else sending x-umw-* is refused, not ignored", () => {
  assert.equal(call("edge", "umw.v1.CommandService/CreateEntity", { "x-umw-principal": "alice", "x-umw-tenant": "acme" }), undefined);
  assert.equal(call("envoy", "umw.v1.QueryService/GetEntity", { "x-umw-principal": "alice" }), undefined);
  for (const header of ["x-umw-principal", "x-umw-tenant", "x-umw-scopes", "x-umw-roles", "x-umw-token-expires-at", "x-umw-connection-id"]) {
    const denied = call("cli", "umw.v1.QueryService/GetEntity", { [header]: "x" });
    assert.equal(denied?.code, Code.PERMISSION_DENIED, header);
    assert.equal(denied?.reason, "PRINCIPAL_ASSERTION_DENIED", header);
    assert.equal(denied?.metadata.headers, header);
  }
  // Other metadata is no assertion.
  assert.equal(call("cli", "umw.v1.QueryService/GetEntity", { traceparent: "00-x", "idempotency-key": "k" }), undefined);
  // A peer that may not call the method at all learns that first.
  assert.equal(call("processor", "umw.v1.QueryService/GetEntity", { "x-umw-principal": "alice" })?.reason, "MESH_METHOD_DENIED");
});

test("no mTLS peer (an insecure, in-process port): nothing to decide by", () => {
  assert.equal(call(undefined, "umw.v1.CommandService/CreateEntity", { "x-umw-principal": "alice" }), undefined);
});

test("patterns: a method, a service's methods, everything, and the `*` identity", () => {
  const table = parseMeshAuthz('{ops: ["umw.v1.QueryService/GetEntity"], admin: ["*"], "*": ["umw.v1.CommandService/*"]}');
  const custom = new MeshAuthorization(table, []);
  assert.equal(custom.mayCall("ops", "umw.v1.QueryService/GetEntity"), true);
  assert.equal(custom.mayCall("ops", "umw.v1.QueryService/ListEntities"), false);
  assert.equal(custom.mayCall("ops", "umw.v1.CommandService/GetCommand"), true, "the * identity's methods are everyone's");
  assert.equal(custom.mayCall("admin", "anything.Else/At"), true);
  assert.equal(custom.mayCall("nobody", "umw.v1.QueryService/GetEntity"), false);
  // A prefix of a service name is not the service.
  assert.equal(new MeshAuthorization({ a: ["umw.v1.Query/*"] }, []).mayCall("a", "umw.v1.QueryService/GetEntity"), false);
});

test("UMW_MESH_AUTHZ: inline JSON or YAML, a file, and clear errors for the rest", () => {
  const dir = mkdtempSync(join(tmpdir(), "umw-authz-"));
  try {
    assert.deepEqual(parseMeshAuthz('{"edge": ["umw.v1.QueryService/*"]}'), { edge: ["umw.v1.QueryService/*"] });
    const file = join(dir, "authz.yaml");
    writeFileSync(file, "edge:\n  - umw.v1.QueryService/*\ncli: []\n");
    assert.deepEqual(loadConfig({ UMW_CONFIG: "", UMW_MESH_AUTHZ: file }).meshAuthz, { edge: ["umw.v1.QueryService/*"], cli: [] });
    const configFile = join(dir, "umw.yaml");
    writeFileSync(configFile, "meshAuthz:\n  cli: [umw.v1.QueryService/GetEntity]\n");
    assert.deepEqual(loadConfig({ UMW_CONFIG: configFile }).meshAuthz, { cli: ["umw.v1.QueryService/GetEntity"] });
    writeFileSync(configFile, "meshAuthz:\n  cli: umw.v1.QueryService/GetEntity\n");
    assert.throws(() => loadConfig({ UMW_CONFIG: configFile }), /meshAuthz=.*cli/s);
    assert.throws(() => loadConfig({ UMW_CONFIG: "", UMW_MESH_AUTHZ: join(dir, "missing.yaml") }), /UMW_MESH_AUTHZ.*no such file/s);
    assert.throws(() => loadConfig({ UMW_CONFIG: "", UMW_MESH_AUTHZ: '{edge: "umw.v1.QueryService/*"}' }), /UMW_MESH_AUTHZ.*edge/s);
    assert.throws(() => loadConfig({ UMW_CONFIG: "", UMW_MESH_AUTHZ: '{edge: ["QueryService"]}' }), /UMW_MESH_AUTHZ.*package\.Service\/Method/s);
    assert.throws(() => loadConfig({ UMW_CONFIG: "", UMW_MESH_AUTHZ: "{edge: [" }), /UMW_MESH_AUTHZ.*not YAML or JSON/s);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
