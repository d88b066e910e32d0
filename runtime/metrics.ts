import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createTlsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type Metric } from "prom-client";

/**
 * Prometheus metrics on prom-client: the process registry every service records into, get-or-create
 * helpers (a metric is declared where it is used; two services of one process share it), and the
 * metrics listener that serves `/metrics` away from the public edge.
 */

export { Counter, Gauge, Histogram, Registry };

/** Seconds, from 0.5 ms to 10 s: what a cache, a database call or an RPC span. */
export const LATENCY_BUCKETS: number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Seconds, from 5 ms to 2 min: how long a write takes to become visible, how far a consumer lags. */
export const PIPELINE_BUCKETS: number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** The registry of this process: every service of `umw serve` records into it, the metrics listener serves it. */
export const defaultRegistry = new Registry();
let processMetrics = false;

/** Node's process metrics (CPU, memory, event loop lag, GC) in the process registry, once. */
export function collectProcessMetrics(): void {
  if (processMetrics) return;
  processMetrics = true;
  collectDefaultMetrics({ register: defaultRegistry });
}

interface MetricOptions<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly labelNames?: readonly L[];
}

/** The registry's metric of that name, or a new one; a name declared with other labels or type is a bug. */
function getOrCreate<M extends Metric<string>>(registry: Registry, options: MetricOptions<string>, type: new (...args: any[]) => M, make: () => M): M {
  const existing = registry.getSingleMetric(options.name);
  if (existing) {
    const labels = (existing as unknown as { labelNames: string[] }).labelNames ?? [];
    if (!(existing instanceof type) || labels.join(",") !== (options.labelNames ?? []).join(",")) {
      throw new Error(`metric ${options.name} is already registered with another type or labels {${labels.join(", ")}}`);
    }
    return existing;
  }
  return make();
}

export function counter<L extends string>(registry: Registry, options: MetricOptions<L>): Counter<L> {
  return getOrCreate(registry, options, Counter, () => new Counter<L>({ ...options, labelNames: [...(options.labelNames ?? [])], registers: [registry] })) as Counter<L>;
}

export function gauge<L extends string>(
  registry: Registry,
  options: MetricOptions<L> & { collect?: (this: Gauge<L>) => void | Promise<void> },
): Gauge<L> {
  return getOrCreate(registry, options, Gauge, () => new Gauge<L>({ ...options, labelNames: [...(options.labelNames ?? [])], registers: [registry] })) as Gauge<L>;
}

export function histogram<L extends string>(registry: Registry, options: MetricOptions<L> & { buckets?: number[] }): Histogram<L> {
  return getOrCreate(registry, options, Histogram, () =>
    new Histogram<L>({ ...options, labelNames: [...(options.labelNames ?? [])], buckets: options.buckets ?? LATENCY_BUCKETS, registers: [registry] }),
  ) as Histogram<L>;
}

type Labels = Record<string, string | number>;

/** The value of one series (a counter or gauge), 0 when it does not exist; tests and `umw status`. */
export async function valueOf(metric: Counter<string> | Gauge<string>, labels: Labels = {}): Promise<number> {
  const { values } = await metric.get();
  return values.filter((sample) => matches(sample.labels, labels)).reduce((total, sample) => total + sample.value, 0);
}

/** How many observations a histogram holds in the series matching `labels`. */
export async function countOf(metric: Histogram<string>, labels: Labels = {}): Promise<number> {
  const { values } = await metric.get();
  return values.filter((sample) => sample.metricName?.endsWith("_count") && matches(sample.labels, labels)).reduce((total, sample) => total + sample.value, 0);
}

function matches(labels: Partial<Record<string, string | number>>, match: Labels): boolean {
  return Object.entries(match).every(([name, value]) => String(labels[name]) === String(value));
}

export interface MetricsServer {
  readonly port: number;
  /** e.g. http://127.0.0.1:9464/metrics */
  readonly url: string;
  close(): Promise<void>;
}

interface SharedServer {
  readonly server: Server;
  readonly registries: Map<Registry, number>;
  readonly port: number;
}

/** Servers by host:port, so services running in one process share one metrics port. */
const shared = new Map<string, Promise<SharedServer>>();

/**
 * Serves `GET /metrics` (Prometheus text format) on host:port: the metrics listener, apart from
 * every public port. Services of one process that ask for the same fixed port share one server
 * that renders all their registries; port 0 always starts a server of its own on a free port.
 */
export async function serveMetrics(host: string, port: number, registry: Registry = defaultRegistry, tls?: MetricsTls): Promise<MetricsServer> {
  const key = port === 0 ? undefined : `${host}:${port}`;
  let pending = key ? shared.get(key) : undefined;
  if (!pending) {
    pending = listen(host, port, tls);
    if (key) {
      shared.set(key, pending);
      pending.catch(() => shared.delete(key));
    }
  }
  const entry = await pending;
  entry.registries.set(registry, (entry.registries.get(registry) ?? 0) + 1);
  const displayHost = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
  let closed = false;
  return {
    port: entry.port,
    url: `${tls ? "https" : "http"}://${displayHost}:${entry.port}/metrics`,
    async close() {
      if (closed) return;
      closed = true;
      const uses = (entry.registries.get(registry) ?? 1) - 1;
      if (uses > 0) entry.registries.set(registry, uses);
      else entry.registries.delete(registry);
      if (entry.registries.size > 0) return;
      if (key) shared.delete(key);
      entry.server.closeAllConnections();
      await new Promise<void>((resolve) => entry.server.close(() => resolve()));
    },
  };
}

/** mTLS for the metrics listener: its certificate, and the CA whose client certificates may scrape. */
export interface MetricsTls {
  readonly key: Buffer;
  readonly cert: Buffer;
  readonly ca: Buffer;
}

async function listen(host: string, port: number, tls: MetricsTls | undefined): Promise<SharedServer> {
  const registries = new Map<Registry, number>();
  const handle = (request: IncomingMessage, response: ServerResponse) => {
    const path = (request.url ?? "/").split("?")[0];
    if (path !== "/metrics" || (request.method !== "GET" && request.method !== "HEAD")) {
      response.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("not found\n");
      return;
    }
    const all = [...registries.keys()];
    const render = all.length === 1 ? all[0]!.metrics() : Registry.merge(all).metrics();
    render.then(
      (body) => {
        response.writeHead(200, { "content-type": Registry.PROMETHEUS_CONTENT_TYPE, "cache-control": "no-store" });
        response.end(request.method === "HEAD" ? undefined : body);
      },
      (error: Error) => response.writeHead(500, { "content-type": "text/plain; charset=utf-8" }).end(`${error.message}\n`),
    );
  };
  // With mTLS only a client with a certificate of the mesh CA gets past the handshake.
  const server: Server = tls ? createTlsServer({ key: tls.key, cert: tls.cert, ca: tls.ca, requestCert: true, rejectUnauthorized: true }, handle) : createServer(handle);
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error) => reject(new Error(`metrics: cannot listen on ${host}:${port}: ${error.message}`)));
    server.listen(port, host, () => resolve());
  });
  server.unref();
  return { server, registries, port: (server.address() as AddressInfo).port };
}
