import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A small Prometheus registry: counters, gauges and fixed-bucket histograms with labels, rendered
 * in the text exposition format (version 0.0.4), and an HTTP server for `/metrics`.
 */

export type Labels = Readonly<Record<string, string>>;

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

export interface MetricOptions {
  readonly name: string;
  readonly help: string;
  readonly labelNames?: readonly string[];
}

export interface HistogramOptions extends MetricOptions {
  /** Upper bounds, ascending; `+Inf` is implied. Defaults to latency buckets in seconds. */
  readonly buckets?: readonly number[];
}

/** Seconds, from 0.5 ms to 10 s: what a cache and a database call span. */
export const LATENCY_BUCKETS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

abstract class Metric<V> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  protected readonly series = new Map<string, { labels: Labels; value: V }>();

  constructor(options: MetricOptions, readonly type: "counter" | "gauge" | "histogram") {
    if (!METRIC_NAME.test(options.name)) throw new Error(`metric name ${JSON.stringify(options.name)} is not valid`);
    for (const label of options.labelNames ?? []) {
      if (!LABEL_NAME.test(label) || label.startsWith("__") || label === "le") throw new Error(`${options.name}: label name ${JSON.stringify(label)} is not valid`);
    }
    this.name = options.name;
    this.help = options.help;
    this.labelNames = [...(options.labelNames ?? [])];
  }

  protected slot(labels: Labels, init: () => V): { labels: Labels; value: V } {
    const key = this.keyOf(labels);
    let slot = this.series.get(key);
    if (!slot) {
      const own: Record<string, string> = {};
      for (const name of this.labelNames) own[name] = labels[name]!;
      this.series.set(key, (slot = { labels: own, value: init() }));
    }
    return slot;
  }

  protected keyOf(labels: Labels): string {
    const given = Object.keys(labels);
    if (given.length !== this.labelNames.length || this.labelNames.some((name) => typeof labels[name] !== "string")) {
      throw new Error(`${this.name}: expected labels {${this.labelNames.join(", ")}}, got {${given.join(", ")}}`);
    }
    return this.labelNames.map((name) => labels[name]).join("\u0000");
  }

  /** Drops every series (tests). */
  reset(): void {
    this.series.clear();
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.type}`];
    for (const { labels, value } of this.series.values()) this.renderSeries(lines, labels, value);
    return lines.join("\n") + "\n";
  }

  protected abstract renderSeries(lines: string[], labels: Labels, value: V): void;
}

export class Counter extends Metric<number> {
  constructor(options: MetricOptions) {
    super(options, "counter");
  }

  inc(labels: Labels = {}, amount = 1): void {
    if (!(amount >= 0)) throw new Error(`${this.name}: a counter only goes up (got ${amount})`);
    this.slot(labels, () => 0).value += amount;
  }

  get(labels: Labels = {}): number {
    return this.series.get(this.keyOf(labels))?.value ?? 0;
  }

  /** Sum over every series whose labels include `match`. */
  sum(match: Partial<Labels> = {}): number {
    let total = 0;
    for (const { labels, value } of this.series.values()) if (matches(labels, match)) total += value;
    return total;
  }

  protected renderSeries(lines: string[], labels: Labels, value: number): void {
    lines.push(`${this.name}${formatLabels(labels)} ${formatValue(value)}`);
  }
}

export class Gauge extends Metric<number> {
  constructor(options: MetricOptions) {
    super(options, "gauge");
  }

  set(labels: Labels, value: number): void {
    this.slot(labels, () => 0).value = value;
  }

  inc(labels: Labels = {}, amount = 1): void {
    this.slot(labels, () => 0).value += amount;
  }

  dec(labels: Labels = {}, amount = 1): void {
    this.slot(labels, () => 0).value -= amount;
  }

  get(labels: Labels = {}): number {
    return this.series.get(this.keyOf(labels))?.value ?? 0;
  }

  protected renderSeries(lines: string[], labels: Labels, value: number): void {
    lines.push(`${this.name}${formatLabels(labels)} ${formatValue(value)}`);
  }
}

interface HistogramValue {
  readonly counts: number[];
  sum: number;
  count: number;
}

export class Histogram extends Metric<HistogramValue> {
  readonly buckets: readonly number[];

  constructor(options: HistogramOptions) {
    super(options, "histogram");
    const buckets = [...(options.buckets ?? LATENCY_BUCKETS)].filter((bound) => bound !== Infinity);
    if (buckets.some((bound, i) => !Number.isFinite(bound) || (i > 0 && bound <= buckets[i - 1]!))) {
      throw new Error(`${options.name}: buckets must be finite and strictly ascending`);
    }
    this.buckets = buckets;
  }

  observe(labels: Labels, value: number): void {
    const slot = this.slot(labels, () => ({ counts: new Array<number>(this.buckets.length).fill(0), sum: 0, count: 0 })).value;
    // Bucket counts are stored per bucket and made cumulative when rendered.
    const index = this.buckets.findIndex((bound) => value <= bound);
    if (index >= 0) slot.counts[index]! += 1;
    slot.sum += value;
    slot.count += 1;
  }

  /** Starts a timer; the returned function observes the elapsed seconds. */
  startTimer(labels: Labels): (extra?: Labels) => number {
    const started = performance.now();
    return (extra) => {
      const seconds = (performance.now() - started) / 1000;
      this.observe({ ...labels, ...extra }, seconds);
      return seconds;
    };
  }

  count(match: Partial<Labels> = {}): number {
    let total = 0;
    for (const { labels, value } of this.series.values()) if (matches(labels, match)) total += value.count;
    return total;
  }

  protected renderSeries(lines: string[], labels: Labels, value: HistogramValue): void {
    let cumulative = 0;
    this.buckets.forEach((bound, i) => {
      cumulative += value.counts[i]!;
      lines.push(`${this.name}_bucket${formatLabels({ ...labels, le: formatValue(bound) })} ${cumulative}`);
    });
    lines.push(`${this.name}_bucket${formatLabels({ ...labels, le: "+Inf" })} ${value.count}`);
    lines.push(`${this.name}_sum${formatLabels(labels)} ${formatValue(value.sum)}`);
    lines.push(`${this.name}_count${formatLabels(labels)} ${value.count}`);
  }
}

type AnyMetric = Counter | Gauge | Histogram;

/** Named metrics of one process (or one test). Registering a name twice returns the first metric. */
export class Registry {
  private readonly metrics = new Map<string, AnyMetric>();

  counter(options: MetricOptions): Counter {
    return this.register(options, "counter", () => new Counter(options));
  }

  gauge(options: MetricOptions): Gauge {
    return this.register(options, "gauge", () => new Gauge(options));
  }

  histogram(options: HistogramOptions): Histogram {
    return this.register(options, "histogram", () => new Histogram(options));
  }

  get(name: string): AnyMetric | undefined {
    return this.metrics.get(name);
  }

  render(): string {
    return [...this.metrics.values()].map((metric) => metric.render()).join("");
  }

  private register<M extends AnyMetric>(options: MetricOptions, type: M["type"], make: () => M): M {
    const existing = this.metrics.get(options.name);
    if (existing) {
      const sameLabels = existing.labelNames.join(",") === (options.labelNames ?? []).join(",");
      if (existing.type !== type || !sameLabels) {
        throw new Error(`metric ${options.name} is already registered as a ${existing.type} with labels {${existing.labelNames.join(", ")}}`);
      }
      return existing as M;
    }
    const metric = make();
    this.metrics.set(options.name, metric);
    return metric;
  }
}

/** The process-wide registry every service uses unless given its own. */
export const defaultRegistry = new Registry();

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
 * Serves `GET /metrics` (Prometheus text format) on host:port. Services of one process that ask
 * for the same fixed port share one server that renders all their registries; port 0 always
 * starts a server of its own on a free port.
 */
export async function serveMetrics(host: string, port: number, registry: Registry = defaultRegistry): Promise<MetricsServer> {
  const key = port === 0 ? undefined : `${host}:${port}`;
  let pending = key ? shared.get(key) : undefined;
  if (!pending) {
    pending = listen(host, port);
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
    url: `http://${displayHost}:${entry.port}/metrics`,
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

async function listen(host: string, port: number): Promise<SharedServer> {
  const registries = new Map<Registry, number>();
  const server = createServer((request, response) => {
    const path = (request.url ?? "/").split("?")[0];
    if (path !== "/metrics" || (request.method !== "GET" && request.method !== "HEAD")) {
      response.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("not found\n");
      return;
    }
    let body: string;
    try {
      body = [...registries.keys()].map((registry) => registry.render()).join("");
    } catch (error) {
      response.writeHead(500, { "content-type": "text/plain; charset=utf-8" }).end(`${(error as Error).message}\n`);
      return;
    }
    response.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8", "cache-control": "no-store" });
    response.end(request.method === "HEAD" ? undefined : body);
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error) => reject(new Error(`metrics: cannot listen on ${host}:${port}: ${error.message}`)));
    server.listen(port, host, () => resolve());
  });
  server.unref();
  return { server, registries, port: (server.address() as AddressInfo).port };
}

function matches(labels: Labels, match: Partial<Labels>): boolean {
  return Object.entries(match).every(([name, value]) => labels[name] === value);
}

function formatLabels(labels: Labels): string {
  const entries = Object.entries(labels);
  if (entries.length === 0) return "";
  return `{${entries.map(([name, value]) => `${name}="${escapeLabel(value)}"`).join(",")}}`;
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function escapeHelp(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}
