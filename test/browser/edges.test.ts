import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "node:https";
import type { CDPSession, Page } from "playwright-core";
import { adsBootstrap, bootstrapYaml } from "../../services/control-plane/bootstrap.js";
import { MESH_IDENTITIES } from "../../services/registry.js";
import { testCerts, type TestCerts } from "../support/certs.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { infra, runId } from "../support/env.js";
import { dropKafkaPrefix, runPrefix } from "../support/kafka.js";
import { freePort, freeServicePorts } from "../support/ports.js";
import { waitFor } from "../support/wait.js";
import { requireEnvoy, startProcess, umw, type Proc } from "../envoy/support.js";
import { launchChromium, type TrustingChromium } from "./chromium.js";
import type { CallResult, PageApi, Protocol, StreamView } from "./page.js";
import { bundlePage, serveStaticSite, type StaticSite } from "./static-site.js";
import { dropRedisPrefix } from "../support/redis.js";

const TENANT = "browser";
const TYPE = "todo";
const ARTIFACTS = join(process.cwd(), "test-results", "browser");

/** Calls one function of the page's window.umw with JSON arguments. */
function call<K extends keyof PageApi>(page: Page, name: K, ...args: Parameters<PageApi[K]>): Promise<Awaited<ReturnType<PageApi[K]>>> {
  return page.evaluate(([fn, list]) => (window as unknown as { umw: Record<string, (...a: unknown[]) => unknown> }).umw[fn]!(...list), [name, args] as const) as never;
}

/** Every response Chromium received from `origin`, with the protocol and the connection it came over (DevTools protocol). */
async function recordResponses(page: Page, origin: string): Promise<{ cdp: CDPSession; responses: Array<{ url: string; protocol: string; connectionId: number }> }> {
  const cdp = await page.context().newCDPSession(page);
  const responses: Array<{ url: string; protocol: string; connectionId: number }> = [];
  cdp.on("Network.responseReceived", (event) => {
    if (event.response.url.startsWith(origin)) responses.push({ url: event.response.url, protocol: event.response.protocol ?? "", connectionId: event.response.connectionId });
  });
  await cdp.send("Network.enable");
  return { cdp, responses };
}

/** A GET with an Origin, from Node over TLS (trusting `ca`): the status and the response headers. */
function getWithOrigin(url: string, origin: string, ca: Buffer): Promise<{ status: number; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    request(url, { ca, headers: { origin } }, (response) => {
      response.resume();
      response.on("end", () => resolve({ status: response.statusCode ?? 0, headers: response.headers }));
    })
      .on("error", reject)
      .end();
  });
}

describe("a real browser (headless Chromium) over HTTPS/2 through both edges", { timeout: 120_000 }, () => {
  let certs: TestCerts;
  let db: TestDatabase;
  let dir: string;
  let browser: TrustingChromium;
  let allowed: StaticSite;
  let disallowed: StaticSite;
  const keyPrefix = `t${runId()}:`;
  const topicPrefix = runPrefix();
  const procs: Proc[] = [];
  const ports = { nodePlain: 0, nodeTls: 0, envoyPlain: 0, envoyTls: 0, envoyAdmin: 0, controlPlane: 0 };
  const seeded = new Map<string, string>();

  /** A REST write by another client (Node's fetch, through the plain HTTP Node edge), accepted as a command. */
  const restWrite = async (method: "POST" | "PUT", path: string, data: unknown): Promise<void> => {
    const response = await fetch(`http://127.0.0.1:${ports.nodePlain}/v1/tenants/${TENANT}/types/${TYPE}/entities${path}`, {
      method,
      headers: { "content-type": "application/json", "idempotency-key": `"${runId()}"` },
      body: JSON.stringify(data),
    });
    const body: unknown = await response.json();
    assert.equal(response.status, 202, JSON.stringify(body));
  };

  before(async () => {
    requireEnvoy();
    certs = testCerts(MESH_IDENTITIES);
    dir = mkdtempSync(join(tmpdir(), "umw-browser-"));
    db = await createTestDatabase();
    const script = await bundlePage();
    allowed = await serveStaticSite(script, "umw in a browser (allowed origin)");
    disallowed = await serveStaticSite(script, "umw in a browser (origin not allowed)");
    const services = await freeServicePorts();
    ports.nodePlain = services.UMW_EDGE_PORT!;
    for (const key of ["nodeTls", "envoyPlain", "envoyTls", "envoyAdmin", "controlPlane"] as const) ports[key] = await freePort();

    // About the browser transports through both edges, not authentication (test/edge/auth.test.ts, test/envoy/auth.test.ts): explicitly off.
    const common = { UMW_CERTS_DIR: certs.dir, UMW_EDGE_CORS_ORIGINS: allowed.origin, UMW_LOG_LEVEL: "info", UMW_AUTH_MODE: "none" };
    // Envoy's leg: the control plane serves both listeners (plain and TLS with Envoy's own certificate).
    const controlPlane = umw(["control-plane"], {
      ...common,
      UMW_CONTROL_PLANE_PORT: String(ports.controlPlane),
      UMW_EDGE_PORT: String(ports.envoyPlain),
      UMW_EDGE_TLS_PORT: String(ports.envoyTls),
      UMW_EDGE_TLS_CERT: join(certs.dir, "envoy.crt"),
      UMW_EDGE_TLS_KEY: join(certs.dir, "envoy.key"),
    });
    procs.push(controlPlane);
    await controlPlane.waitFor(/control plane ready/);
    // Every service on the real stores, the Node edge with its TLS listener; query, command and realtime register with the control plane.
    const all = umw(["serve", "all"], {
      ...common,
      ...Object.fromEntries(Object.entries(services).map(([key, value]) => [key, String(value)])),
      UMW_CONFIG: "config/demo.yaml",
      UMW_PG_URL: db.url,
      UMW_PG_REPLICA_URL: db.replicaUrl,
      UMW_REDIS_URL: infra.redisUrl,
      UMW_KAFKA_BROKERS: infra.kafkaBrokers.join(","),
      UMW_CACHE_KEY_PREFIX: keyPrefix,
      UMW_TOPIC_PREFIX: topicPrefix,
      UMW_CONTROL_PLANE_ADDRESS: `127.0.0.1:${ports.controlPlane}`,
      UMW_EDGE_TLS_PORT: String(ports.nodeTls),
      UMW_EDGE_TLS_CERT: join(certs.dir, "edge.crt"),
      UMW_EDGE_TLS_KEY: join(certs.dir, "edge.key"),
    });
    procs.push(all);
    await all.waitFor(/umw ready/, 60_000);
    const bootstrap = join(dir, "bootstrap.yaml");
    writeFileSync(
      bootstrap,
      bootstrapYaml(adsBootstrap({ certsDir: certs.dir, adminPort: ports.envoyAdmin, controlPlane: { host: "127.0.0.1", port: ports.controlPlane }, nodeId: "browser-edge" }), "test bootstrap"),
    );
    procs.push(startProcess(requireEnvoy(), ["-c", bootstrap, "--use-dynamic-base-id", "--concurrency", "1", "--log-level", "warn", "--drain-time-s", "1"]));
    browser = await launchChromium(join(certs.dir, "ca.crt"));

    // One entity per leg, written as a command and waited for until it is readable.
    for (const leg of ["node", "envoy"]) {
      const id = `${leg}-${runId()}`;
      await restWrite("POST", `?id=${id}`, { title: `seeded for ${leg}` });
      await waitFor(async () => (await fetch(`http://127.0.0.1:${ports.nodePlain}/v1/tenants/${TENANT}/types/${TYPE}/entities/${id}`)).status === 200, { what: `${id} readable`, timeoutMs: 30_000 });
      seeded.set(leg, id);
    }
    // Envoy has both listeners and the realtime cluster has an endpoint.
    const admin = (path: string) => fetch(`http://127.0.0.1:${ports.envoyAdmin}${path}`).then((response) => response.text()).catch(() => "");
    await waitFor(async () => /^edge-tls::/m.test(await admin("/listeners")), { what: "Envoy's edge-tls listener", timeoutMs: 30_000, everyMs: 200 });
    await waitFor(
      async () => {
        const text = await admin("/clusters");
        return ["query", "command", "realtime"].every((cluster) => new RegExp(`^${cluster}::127\\.0\\.0\\.1:\\d+::health_flags::healthy$`, "m").test(text));
      },
      { what: "Envoy's clusters have healthy endpoints", timeoutMs: 30_000, everyMs: 200 },
    );
    mkdirSync(ARTIFACTS, { recursive: true });
  });

  after(async () => {
    await browser?.close();
    for (const proc of procs.reverse()) await proc.stop().catch(() => undefined);
    await allowed?.close();
    await disallowed?.close();
    await db?.drop();
    await dropKafkaPrefix(topicPrefix).catch(() => undefined);
    await dropRedisPrefix(keyPrefix);
    certs?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** A page of `origin` in the shared profile, with window.umw loaded. */
  const openPage = async (origin: string): Promise<Page> => {
    const page = await browser.context.newPage();
    await page.goto(`${origin}/`);
    await page.waitForFunction(() => "umw" in window);
    return page;
  };
  const edgeOf = (leg: "node" | "envoy") => `https://127.0.0.1:${leg === "node" ? ports.nodeTls : ports.envoyTls}`;
  const streamsOpen = (page: Page, indexes: number[], what: string) =>
    waitFor(async () => ((await call(page, "streams")) as StreamView[]).filter((_, index) => indexes.includes(index)).every((stream) => stream.snapshot), { what, timeoutMs: 20_000, everyMs: 100 });

  for (const leg of ["node", "envoy"] as const) {
    const name = leg === "node" ? "Node edge" : "Envoy";

    test(`${name} over TLS (h2): gRPC-web and Connect unary, Subscribe sees another client's write, ten streams and unary calls on one connection`, async () => {
      const edge = edgeOf(leg);
      const id = seeded.get(leg)!;
      const page = await browser.context.newPage();
      const { cdp, responses } = await recordResponses(page, edge);
      try {
        await page.goto(`${allowed.origin}/`);
        await page.waitForFunction(() => "umw" in window);
        const get = (protocol: Protocol) => call(page, "getEntity", edge, protocol, TENANT, TYPE, id) as Promise<CallResult>;

        // gRPC-web unary through the edge, over a certificate the browser verified against the dev CA.
        const grpcWeb = await get("grpc-web");
        assert.equal(grpcWeb.ok && grpcWeb.title, `seeded for ${leg}`, JSON.stringify(grpcWeb));

        // Connect: the Node edge speaks it; Envoy only with the connect_grpc_bridge filter in its listener.
        const connectBridged =
          leg === "node" || (await (await fetch(`http://127.0.0.1:${ports.envoyAdmin}/config_dump?resource=dynamic_listeners`)).text()).includes("connect_grpc_bridge");
        const connect = await get("connect");
        if (connectBridged) assert.equal(connect.ok && connect.title, `seeded for ${leg}`, JSON.stringify(connect));
        else assert.equal(connect.ok, false, `Envoy without connect_grpc_bridge answered a Connect call: ${JSON.stringify(connect)}`);
        const streamProtocols: Protocol[] = connectBridged ? ["grpc-web", "connect"] : ["grpc-web"];

        // Subscribe sees a change made by another client (a REST write from Node).
        const watching = await Promise.all(streamProtocols.map((protocol) => call(page, "subscribe", edge, protocol, TENANT, TYPE)));
        await streamsOpen(page, watching, "snapshots of the first streams");
        const changed = `changed by another client (${leg})`;
        await restWrite("PUT", `/${id}`, { title: changed });
        await waitFor(
          async () => {
            const views = (await call(page, "streams")) as StreamView[];
            return watching.every((index) => views[index]!.changes.some((change) => change.id === id && change.title === changed));
          },
          { what: "every stream sees the REST write", timeoutMs: 20_000, everyMs: 100 },
        );
        await call(page, "closeStreams");

        // Ten Subscribe streams stay open while unary calls complete: one HTTP/2 connection carries them all
        // (over HTTP/1.1 a browser holds six connections per origin, and the seventh call would wait).
        const before = responses.length;
        const ten = await Promise.all(Array.from({ length: 10 }, (_, n) => call(page, "subscribe", edge, streamProtocols[n % streamProtocols.length]!, TENANT, TYPE)));
        await streamsOpen(page, ten, "ten streams open");
        const unary = await page.evaluate(
          async ([base, protocols, tenant, type, entity]) => {
            const { umw } = window as unknown as { umw: PageApi };
            const started = performance.now();
            const results = await Promise.all(Array.from({ length: 6 }, (_, n) => umw.getEntity(base, protocols[n % protocols.length]!, tenant, type, entity)));
            return { results, ms: performance.now() - started };
          },
          [edge, streamProtocols, TENANT, TYPE, id] as const,
        );
        assert.ok(unary.results.every((result) => result.ok && result.title === changed), JSON.stringify(unary));
        const views = (await call(page, "streams")) as StreamView[];
        assert.deepEqual(ten.map((index) => views[index]!.ended), Array(10).fill(undefined), "all ten streams still open after the unary calls");
        // What Chromium itself recorded (DevTools protocol): the protocol and connection of every response.
        // Resource Timing's nextHopProtocol is empty here: cross-origin entries hide it without Timing-Allow-Origin.
        const during = responses.slice(before);
        assert.ok(during.length >= 16, `responses seen: ${JSON.stringify(during)}`);
        assert.deepEqual([...new Set(responses.map((response) => response.protocol))], ["h2"], JSON.stringify(responses));
        assert.equal(new Set(responses.map((response) => response.connectionId)).size, 1, `connections: ${JSON.stringify(responses)}`);
        await call(page, "log", `${name}: 10 streams open over one h2 connection; 6 unary calls took ${unary.ms.toFixed(0)} ms`);
        await page.screenshot({ path: join(ARTIFACTS, `${leg}.png`), fullPage: true });
        console.log(
          `${name}: ${responses.length} responses over one connection (${responses[0]!.connectionId}, h2); 6 unary calls with 10 streams open: ${unary.ms.toFixed(0)} ms; Connect ${connectBridged ? "served" : `refused (${!connect.ok && connect.code}: ${!connect.ok && connect.message})`}`,
        );
        await call(page, "closeStreams");
      } finally {
        await cdp.detach().catch(() => undefined);
        await page.close();
      }
    });

    test(
      `${name} over TLS: REST with CORS works from the allowed origin and is refused from another`,
      async () => {
        const edge = edgeOf(leg);
        const restUrl = `${edge}/v1/tenants/${TENANT}/types/${TYPE}/entities/${seeded.get(leg)!}`;
        const ca = readFileSync(join(certs.dir, "ca.crt"));
        const stranger = await openPage(disallowed.origin);
        try {
          const fromStranger = await call(stranger, "rest", restUrl);
          assert.ok("refused" in fromStranger, `a disallowed origin read through CORS: ${JSON.stringify(fromStranger)}`);
        } finally {
          await stranger.close();
        }
        const page = await openPage(allowed.origin);
        try {
          const fromAllowed = await call(page, "rest", restUrl);
          assert.ok(
            "status" in fromAllowed && fromAllowed.status === 200,
            `${JSON.stringify(fromAllowed)}; the same from Node: ${JSON.stringify(await getWithOrigin(restUrl, allowed.origin, ca))}`,
          );
          assert.match(String((fromAllowed.body as { entity?: { data?: { title?: string } } }).entity?.data?.title), /seeded|changed/);
        } finally {
          await page.close();
        }
      },
    );
  }
});
