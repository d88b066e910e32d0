import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { parse } from "yaml";
import { CONFIG_ENV, loadConfig } from "../runtime/config.js";
import { ALL_SERVICES, MESH_IDENTITIES, SERVICES } from "../services/registry.js";
import { certificateFiles } from "../runtime/certs.js";
import { checkAgainstProto, loadEnvoyProtos } from "./support/envoy-schema.js";
import { fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";

const compose = parse(readFileSync("docker-compose.yml", "utf8"), { merge: true }) as {
  services: Record<string, { command?: string[]; environment?: Record<string, string>; expose?: string[]; volumes?: string[] }>;
};
const envoy = parse(readFileSync("envoy/envoy.yaml", "utf8"), { merge: true });

const umwServices = Object.entries(compose.services).filter(([, service]) => service.command?.[0] === "serve");
const KNOWN_ENV = new Set([...Object.values(CONFIG_ENV), "UMW_CONFIG"]);

test("every umw service in docker-compose exists under services/, and every mesh service is there", () => {
  for (const [name, service] of umwServices) {
    const served = service.command![1]!;
    assert.ok(served in SERVICES, `${name} serves unknown service ${served}`);
    assert.ok(existsSync(`services/${served}/index.ts`), `services/${served} is missing`);
  }
  const composed = new Set(umwServices.map(([, service]) => service.command![1]));
  // In production Envoy is the edge; every other service runs in its own container.
  for (const name of ALL_SERVICES.filter((name) => name !== "edge")) assert.ok(composed.has(name), `docker-compose lacks ${name}`);
  assert.ok(compose.services.envoy && compose.services.kafka && compose.services.redis);
  assert.ok(compose.services["postgres-primary"] && compose.services["postgres-replica"]);
});

test("the env docker-compose sets is what the code reads, with valid values and matching ports", () => {
  for (const [name, service] of umwServices) {
    const env = service.environment ?? {};
    for (const key of Object.keys(env)) assert.ok(KNOWN_ENV.has(key), `${name}: ${key} is not a setting (runtime/config.ts)`);
    const { UMW_CONFIG: _file, ...withoutFile } = env;
    const config = loadConfig(withoutFile);
    const portKey = `${service.command![1]!.replace(/-(\w)/g, (_, c: string) => c.toUpperCase())}Port` as keyof typeof config;
    assert.ok(portKey in config, `${name}: no ${String(portKey)} setting`);
    assert.ok(service.expose?.includes(String(config[portKey])), `${name} listens on ${String(config[portKey])} but exposes ${service.expose}`);
  }
});

test("each container mounts only the CA certificate and its own certificates, never the CA key or another identity's key", () => {
  const certsDir = loadConfig({ UMW_CERTS_DIR: compose.services.query?.environment?.UMW_CERTS_DIR }).certsDir;
  assert.equal(certsDir, "/certs");
  const identityOf = (name: string, service: { command?: string[] }) => (name === "envoy" ? "envoy" : service.command?.[0] === "serve" ? service.command[1]! : name);
  let mounting = 0;
  for (const [name, service] of Object.entries(compose.services)) {
    const volumes: { source: string; target: string }[] = (service.volumes ?? []).map((volume: string) => {
      const [source, target] = volume.split(":");
      return { source: source!, target: target! };
    });
    const certMounts: { source: string; target: string }[] = volumes.filter(({ source, target }) => source.includes(".certs") || target.startsWith(`${certsDir}/`) || target === certsDir);
    for (const { source, target } of certMounts) {
      assert.notEqual(target, certsDir, `${name} mounts the whole certs folder (${source})`);
      assert.doesNotMatch(source, /ca\.key$/, `${name} mounts the CA key`);
      assert.match(source, /^\.\/\.certs\/[^/]+$/, `${name}: ${source} is one file of .certs`);
      assert.equal(target, `${certsDir}/${source.slice("./.certs/".length)}`, `${name}: ${source} keeps its name under ${certsDir}`);
    }
    const spec = MESH_IDENTITIES.find((identity) => identity.name === identityOf(name, service));
    const mounted = new Set<string>(certMounts.map(({ source }) => source.slice("./.certs/".length)));
    if (!spec) {
      assert.equal(mounted.size, 0, `${name} is no mesh identity but mounts ${[...mounted].join(", ")}`);
      continue;
    }
    // What loadIdentity reads, for the certificates this identity has, and nothing else.
    const usages = spec.role === "both" ? (["server", "client"] as const) : ([spec.role] as const);
    const expected = new Set(["ca.crt", ...usages.flatMap((usage) => Object.values(certificateFiles(spec.name, spec.role, usage)))]);
    assert.deepEqual([...mounted].sort(), [...expected].sort(), `${name} mounts exactly its own certificates`);
    mounting++;
  }
  // Every mesh identity that runs in a container (all but the Node edge, the cli and the canary, a prober run on purpose) was checked.
  assert.equal(mounting, MESH_IDENTITIES.filter(({ name }) => !["edge", "cli", "canary"].includes(name)).length);
});

test("Envoy's clusters point at the ports the services listen on", () => {
  for (const cluster of envoy.static_resources.clusters) {
    const endpoint = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
    const service = compose.services[endpoint.address];
    assert.ok(service, `cluster ${cluster.name} targets unknown host ${endpoint.address}`);
    const portKey = `UMW_${endpoint.address.toUpperCase()}_PORT`;
    assert.equal(service.environment?.[portKey], String(endpoint.port_value), `cluster ${cluster.name}`);
    assert.equal(service.environment?.UMW_QUERY_ADDRESS, "query:7001");
  }
});

test("envoy.yaml is a valid Bootstrap by Envoy's own protos", () => {
  const root = loadEnvoyProtos([
    "envoy/config/bootstrap/v3/bootstrap.proto",
    "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
    "envoy/extensions/filters/http/cors/v3/cors.proto",
    "envoy/extensions/filters/http/grpc_web/v3/grpc_web.proto",
    "envoy/extensions/filters/http/grpc_json_transcoder/v3/transcoder.proto",
    "envoy/extensions/filters/http/router/v3/router.proto",
    "envoy/extensions/transport_sockets/tls/v3/tls.proto",
    "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
    "envoy/extensions/filters/http/lua/v3/lua.proto",
    "envoy/extensions/filters/http/compressor/v3/compressor.proto",
    "envoy/extensions/compression/gzip/compressor/v3/gzip.proto",
    "envoy/extensions/compression/brotli/compressor/v3/brotli.proto",
    "envoy/extensions/filters/http/connect_grpc_bridge/v3/config.proto",
    "envoy/extensions/filters/http/health_check/v3/health_check.proto",
    "envoy/extensions/filters/http/ext_authz/v3/ext_authz.proto",
    "envoy/extensions/filters/http/ratelimit/v3/rate_limit.proto",
  ]);
  assert.deepEqual(checkAgainstProto(root, "envoy.config.bootstrap.v3.Bootstrap", envoy), []);
  // The checker itself must catch a misspelt field, or the assertion above proves nothing.
  const broken = structuredClone(envoy);
  broken.static_resources.clusters[0].conect_timeout = "1s";
  broken.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[1].typed_config.bogus = true;
  const problems = checkAgainstProto(root, "envoy.config.bootstrap.v3.Bootstrap", broken);
  assert.equal(problems.length, 2, problems.join("\n"));
});

test("the transcoder's services are in the descriptor set that compose mounts", () => {
  const hcm = envoy.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
  const transcoder = hcm.http_filters.find((filter: { name: string }) => filter.name === "envoy.filters.http.grpc_json_transcoder").typed_config;
  const mount = compose.services.envoy!.volumes!.find((volume) => volume.includes(transcoder.proto_descriptor));
  assert.ok(mount?.startsWith("./gen/umw.binpb:"), "envoy mounts gen/umw.binpb at the transcoder's proto_descriptor");
  const set = fromBinary(FileDescriptorSetSchema, readFileSync("gen/umw.binpb"));
  const services = set.file.flatMap((file) => file.service.map((service) => `${file.package}.${service.name}`));
  for (const name of transcoder.services) assert.ok(services.includes(name), `${name} not in gen/umw.binpb`);
});
