import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { connect } from "node:http2";
import { get } from "node:https";
import { join } from "node:path";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { DownstreamTlsContextSchema } from "../../gen/envoy/extensions/transport_sockets/tls/v3/tls_pb.js";
import { QueryService } from "../../gen/umw/v1/query_pb.js";
import { ConfigError, edgeTls, loadConfig } from "../../runtime/config.js";
import { clientCredentials } from "../../runtime/tls.js";
import { edgeListener } from "../../services/control-plane/edge-resources.js";
import { edgeTlsListener } from "../../services/control-plane/tls-listener.js";
import { startEdge, type RunningEdge } from "../../services/edge/index.js";
import { testCerts, type TestCerts } from "../support/certs.js";

describe("TLS listeners of the edges", () => {
  let certs: TestCerts;
  let edge: RunningEdge;
  let ca: Buffer;

  before(async () => {
    certs = testCerts(["edge"]);
    ca = readFileSync(join(certs.dir, "ca.crt"));
    // About the TLS listener, not authentication: explicitly none.
    edge = await startEdge({
      auth: { mode: "none" },
      port: 0,
      tls: { port: 0, certFile: join(certs.dir, "edge.crt"), keyFile: join(certs.dir, "edge.key") },
      upstreams: [{ service: QueryService, address: "127.0.0.1:1" }],
      credentials: clientCredentials(certs.identity("edge")),
      drainTimeoutMs: 1_000,
    });
  });

  after(async () => {
    await edge?.stop();
    certs?.remove();
  });

  test("settings: the TLS port needs a certificate and a key, and they need the port", () => {
    assert.equal(edgeTls(loadConfig({})), undefined);
    assert.deepEqual(edgeTls(loadConfig({ UMW_EDGE_TLS_PORT: "8443", UMW_EDGE_TLS_CERT: "/c.pem", UMW_EDGE_TLS_KEY: "/k.pem" })), { port: 8443, certFile: "/c.pem", keyFile: "/k.pem" });
    assert.throws(() => edgeTls(loadConfig({ UMW_EDGE_TLS_PORT: "8443", UMW_EDGE_TLS_CERT: "/c.pem" })), (error: Error) => error instanceof ConfigError && /UMW_EDGE_TLS_KEY/.test(error.message));
    assert.throws(() => edgeTls(loadConfig({ UMW_EDGE_TLS_CERT: "/c.pem", UMW_EDGE_TLS_KEY: "/k.pem" })), /UMW_EDGE_TLS_PORT/);
    assert.throws(() => loadConfig({ UMW_EDGE_TLS_PORT: "https" }), /UMW_EDGE_TLS_PORT="https"/);
  });

  test("the Node edge serves h2 by ALPN, http/1.1 to clients without it, and only with its certificate", async () => {
    const session = connect(`https://127.0.0.1:${edge.tlsPort}`, { ca });
    try {
      const status = await new Promise<number>((resolve, reject) => {
        const stream = session.request({ ":path": "/healthz" });
        stream.on("response", (headers) => resolve(Number(headers[":status"])));
        stream.on("error", reject);
        stream.resume();
      });
      assert.equal(status, 200);
      assert.equal((session.socket as unknown as { alpnProtocol: string }).alpnProtocol, "h2");
    } finally {
      session.close();
    }
    const http1 = await new Promise<{ status: number; version: string }>((resolve, reject) =>
      get(`https://127.0.0.1:${edge.tlsPort}/healthz`, { ca }, (response) => {
        response.resume();
        resolve({ status: response.statusCode ?? 0, version: response.httpVersion });
      }).on("error", reject),
    );
    assert.deepEqual(http1, { status: 200, version: "1.1" });
    // A client that does not trust the dev CA refuses the certificate.
    await assert.rejects(
      new Promise((resolve, reject) => get(`https://127.0.0.1:${edge.tlsPort}/healthz`, resolve).on("error", reject)),
      (error: NodeJS.ErrnoException) => /UNABLE_TO_VERIFY_LEAF_SIGNATURE|unable to verify the first certificate/i.test(`${error.code} ${error.message}`),
    );
  });

  test("an unreadable certificate stops the edge at start, naming the file", async () => {
    await assert.rejects(
      startEdge({
        auth: { mode: "none" },
        port: 0,
        tls: { port: 0, certFile: join(certs.dir, "missing.crt"), keyFile: join(certs.dir, "edge.key") },
        upstreams: [],
        credentials: clientCredentials(certs.identity("edge")),
      }),
      /cannot read the TLS certificate or key.*missing\.crt/,
    );
  });

  test("Envoy's TLS listener is the edge listener on another port behind TLS offering h2 and http/1.1", () => {
    const plain = edgeListener({ listenerPort: 8080, corsOrigins: ["*"], descriptor: { bytes: new Uint8Array() } }, { rds: "umw" });
    const tls = edgeTlsListener(plain, { port: 8443, certFile: "/certs/envoy.crt", keyFile: "/certs/envoy.key" });
    assert.equal(tls.name, "edge-tls");
    const address = tls.address?.address;
    assert.ok(address?.case === "socketAddress" && address.value.portSpecifier.value === 8443);
    assert.equal(tls.filterChains.length, plain.filterChains.length);
    assert.deepEqual(tls.filterChains[0]!.filters, plain.filterChains[0]!.filters);
    const socket = tls.filterChains[0]!.transportSocket;
    assert.equal(socket?.name, "envoy.transport_sockets.tls");
    assert.ok(socket?.configType.case === "typedConfig");
    const context = anyUnpack(socket.configType.value, DownstreamTlsContextSchema)!;
    assert.deepEqual(context.commonTlsContext?.alpnProtocols, ["h2", "http/1.1"]);
    assert.deepEqual(
      context.commonTlsContext?.tlsCertificates.map((certificate) => [certificate.certificateChain?.specifier.value, certificate.privateKey?.specifier.value]),
      [["/certs/envoy.crt", "/certs/envoy.key"]],
    );
    // The plain listener is left as it was.
    assert.equal(plain.name, "edge");
    assert.equal(plain.filterChains[0]!.transportSocket, undefined);
  });
});
