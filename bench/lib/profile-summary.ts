// Summary of a V8 .cpuprofile as text: self time by function, by package (node_modules package, Node's
// own library, the project's files) and by project file, as shares of the busy (non-idle) time.
//   node --import tsx bench/lib/profile-summary.ts <file.cpuprofile>... [--top N]
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { fileURLToPath } from "node:url";

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export interface Row {
  readonly name: string;
  readonly selfMs: number;
  /** Share of the busy time (all samples but `(idle)`), %. */
  readonly pct: number;
}

export interface ProfileSummary {
  readonly wallMs: number;
  readonly busyMs: number;
  readonly byFunction: readonly Row[];
  readonly byPackage: readonly Row[];
  readonly byProjectFile: readonly Row[];
}

const IDLE = "(idle)";

/** Where a function's code comes from: a node_modules package, Node's library, a project file, or a V8 pseudo-frame. */
function packageOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith("(") ? functionName : "(native)";
  if (url.startsWith("node:")) return "node";
  const modules = url.lastIndexOf("node_modules/");
  if (modules >= 0) {
    const parts = url.slice(modules + "node_modules/".length).split("/");
    return parts[0]!.startsWith("@") ? `${parts[0]}/${parts[1]}` : parts[0]!;
  }
  return "umw";
}

function projectFile(url: string): string | undefined {
  if (!url || url.startsWith("node:") || url.includes("node_modules/")) return undefined;
  const path = url.startsWith("file://") ? fileURLToPath(url) : url;
  const match = /\/(runtime|services|bench|gen|cli)\/(.*)$/.exec(path);
  return match ? `${match[1]}/${match[2]}` : basename(path);
}

export function summarize(profile: CpuProfile, top = 25): ProfileSummary {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<number, number>();
  // timeDeltas[i] is the time before sample i; the sample's own duration is the delta to the next one.
  for (let i = 0; i < profile.samples.length; i++) {
    const next = profile.timeDeltas[i + 1] ?? 0;
    selfUs.set(profile.samples[i]!, (selfUs.get(profile.samples[i]!) ?? 0) + Math.max(0, next));
  }
  const fn = new Map<string, number>();
  const pkg = new Map<string, number>();
  const file = new Map<string, number>();
  let busyUs = 0;
  const add = (map: Map<string, number>, key: string, us: number) => map.set(key, (map.get(key) ?? 0) + us);
  for (const [id, us] of selfUs) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    if (functionName === IDLE) continue;
    busyUs += us;
    const where = packageOf(url, functionName);
    const shortUrl = url ? `${projectFile(url) ?? url.replace(/^.*node_modules\//, "").replace(/^file:\/\//, "")}:${lineNumber + 1}` : "";
    add(fn, `${functionName || "(anonymous)"}${shortUrl ? ` ${shortUrl}` : ""}${where === "umw" || !url ? "" : ` [${where}]`}`, us);
    add(pkg, where, us);
    const own = projectFile(url);
    if (own && where === "umw") add(file, own, us);
  }
  const rows = (map: Map<string, number>, n: number): Row[] =>
    [...map.entries()]
      .sort(([, a], [, b]) => b - a)
      .slice(0, n)
      .map(([name, us]) => ({ name, selfMs: Math.round(us / 100) / 10, pct: busyUs > 0 ? Math.round((us / busyUs) * 1000) / 10 : 0 }));
  return {
    wallMs: Math.round((profile.endTime - profile.startTime) / 1000),
    busyMs: Math.round(busyUs / 1000),
    byFunction: rows(fn, top),
    byPackage: rows(pkg, 15),
    byProjectFile: rows(file, 15),
  };
}

export function formatSummary(title: string, summary: ProfileSummary, requests?: number): string {
  const lines = [`== ${title}`, `wall ${summary.wallMs} ms, busy (not idle) ${summary.busyMs} ms${requests ? `, ${requests} requests → ${Math.round((summary.busyMs * 1000) / requests)} µs busy per request` : ""}`];
  const table = (heading: string, rows: readonly Row[]) => {
    lines.push("", `-- self time by ${heading}`);
    for (const row of rows) lines.push(`${row.pct.toFixed(1).padStart(5)}%  ${row.selfMs.toFixed(1).padStart(8)} ms  ${row.name}`);
  };
  table("package", summary.byPackage);
  table("project file", summary.byProjectFile);
  table("function", summary.byFunction);
  return lines.join("\n") + "\n";
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  const topAt = args.indexOf("--top");
  const top = topAt >= 0 ? Number(args.splice(topAt, 2)[1]) : 25;
  for (const path of args) process.stdout.write(formatSummary(path, summarize(JSON.parse(readFileSync(path, "utf8")) as CpuProfile, top)) + "\n");
}
