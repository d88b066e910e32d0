import { request } from "node:https";
/** Reads Prometheus text exposition (what the metrics listeners serve) into samples: `umw status`, tests, benchmarks. */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = LINE.exec(line);
    if (!match) continue;
    const labels: Record<string, string> = {};
    for (const [, name, value] of (match[2] ?? "").matchAll(LABEL)) labels[name!] = value!.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

/** Sum of the samples named `name` whose labels include `match`. */
export function sumOf(samples: readonly Sample[], name: string, match: Readonly<Record<string, string>> = {}): number {
  let total = 0;
  for (const sample of samples) {
    if (sample.name !== name) continue;
    if (Object.entries(match).every(([key, value]) => sample.labels[key] === value)) total += sample.value;
  }
  return total;
}

/** Scrapes a metrics listener; `tls`: a client certificate for one that requires mTLS (UMW_METRICS_TLS). */
export async function scrape(url: string, signal?: AbortSignal, tls?: { key: Buffer; cert: Buffer; ca: Buffer }): Promise<Sample[]> {
  if (tls) return parseMetrics(await getTls(url, signal, tls));
  const response = await fetch(url, { signal });
  if (!response.ok) throw new Error(`GET ${url}: ${response.status}`);
  return parseMetrics(await response.text());
}

function getTls(url: string, signal: AbortSignal | undefined, tls: { key: Buffer; cert: Buffer; ca: Buffer }): Promise<string> {
  return new Promise((resolve, reject) => {
    // The listener's certificate names its service, not the address: the CA is what is checked.
    const req = request(url, { key: tls.key, cert: tls.cert, ca: tls.ca, signal, checkServerIdentity: () => undefined }, (response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => (body += chunk));
      response.on("end", () => (response.statusCode === 200 ? resolve(body) : reject(new Error(`GET ${url}: ${response.statusCode}`))));
      response.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}
