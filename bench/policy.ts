// npm run bench:policy — the cost of one authorization decision: the OPA policy compiled to wasm
// (policy/authz.wasm, evaluated in-process by @open-policy-agent/opa-wasm, as the authorization
// interceptor, the realtime SubscriptionPolicy and the ext_authz Check do) against a same-run
// baseline of hand-written TypeScript: the realtime hub's tenantIsolation for subscriptions, and
// the same tenant + scope comparison written out for a unary call. Single thread, no I/O; a few
// seconds. Knobs: BENCH_DECISIONS (50000 per case), BENCH_WARMUP (5000).
import { performance } from "node:perf_hooks";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import os from "node:os";
import { AuthzPolicy, type PolicyInput } from "../services/policy/authz-policy.js";
import { tenantIsolation, type Caller, type SubscriptionAsk } from "../services/realtime/policy.js";

const DECISIONS = Number(process.env.BENCH_DECISIONS ?? 50_000);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 5_000);

const alice = { kind: "user", subject: "alice", tenant: "acme", scopes: ["entities:read", "commands:read", "realtime:subscribe"], roles: [] } as const;
const read: PolicyInput = { method: "umw.v1.QueryService/GetEntity", tenants: ["acme"], principal: alice };
const crossTenant: PolicyInput = { ...read, tenants: ["globex"] };
const subscription: PolicyInput = {
  method: "umw.v1.RealtimeService/Subscribe",
  tenants: ["acme"],
  principal: alice,
  topics: [
    { kind: "type", tenant: "acme" },
    { kind: "entity", tenant: "acme" },
    { kind: "ownCommands", tenant: "acme", principal: "alice" },
  ],
};
const caller: Caller = { tenant: "acme", tenantFromToken: true, principal: "alice", user: true, expiresAt: undefined, peer: "edge", headers: {} };
const ask: SubscriptionAsk = {
  tenant: "acme",
  topics: [
    { kind: "type", tenant: "acme", type: "todo" },
    { kind: "entity", tenant: "acme", type: "todo", id: "a" },
    { kind: "ownCommands", tenant: "acme", principal: "alice" },
  ],
};
const handWritten = (input: PolicyInput, scope: string) =>
  input.principal?.kind === "service" || (input.tenants.every((tenant) => tenant === input.principal?.tenant) && input.principal!.scopes.includes(scope));

/**
 * µs per call over DECISIONS calls in one loop (pauses included: GC, the wasm heap, CPU taken by other
 * processes), and percentiles of single calls timed one by one (they include the timer's cost).
 */
function measure(run: () => unknown): { meanUs: number; p50Us: number; p99Us: number; p999Us: number; maxUs: number } {
  for (let i = 0; i < WARMUP; i++) run();
  const started = performance.now();
  for (let i = 0; i < DECISIONS; i++) run();
  const meanUs = ((performance.now() - started) * 1000) / DECISIONS;
  const samples = new Float64Array(Math.min(DECISIONS, 20_000));
  for (let i = 0; i < samples.length; i++) {
    const t = performance.now();
    run();
    samples[i] = (performance.now() - t) * 1000;
  }
  samples.sort();
  const at = (q: number) => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))]!;
  return { meanUs: round(meanUs), p50Us: round(at(0.5)), p99Us: round(at(0.99)), p999Us: round(at(0.999)), maxUs: round(samples[samples.length - 1]!) };
}
const round = (value: number) => Math.round(value * 1000) / 1000;

const loadStarted = performance.now();
const policy = await AuthzPolicy.load();
const loadMs = Math.round((performance.now() - loadStarted) * 10) / 10;

const deny = (fn: () => void) => () => {
  try {
    fn();
  } catch {
    return false;
  }
  return true;
};
const cases = {
  "wasm: GetEntity allowed": measure(() => policy.decide(read)),
  "wasm: GetEntity cross-tenant denied": measure(() => policy.decide(crossTenant)),
  "wasm: Subscribe, 3 topics, allowed": measure(() => policy.decide(subscription)),
  "baseline TS: GetEntity allowed": measure(() => handWritten(read, "entities:read")),
  "baseline TS: GetEntity cross-tenant denied": measure(() => handWritten(crossTenant, "entities:read")),
  "baseline TS: tenantIsolation, 3 topics, allowed": measure(deny(() => tenantIsolation.authorize(caller, ask) as void)),
};
const result = {
  when: new Date().toISOString(),
  node: process.version,
  cpus: os.cpus().length,
  loadavg: os.loadavg().map((value) => Math.round(value * 100) / 100),
  decisionsPerCase: DECISIONS,
  policyLoadMs: loadMs,
  cases,
};
for (const [name, figures] of Object.entries(cases)) console.log(`${name.padEnd(48)} mean ${figures.meanUs.toFixed(3)} µs  p50 ${figures.p50Us.toFixed(3)}  p99 ${figures.p99Us.toFixed(3)}  p99.9 ${figures.p999Us.toFixed(1)}  max ${figures.maxUs.toFixed(0)} µs`);
console.log(`policy load (compile + instantiate the wasm): ${loadMs} ms; machine: ${result.cpus} cores, load ${result.loadavg.join(" ")}`);
const out = join(dirname(fileURLToPath(import.meta.url)), "results/policy.json");
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify(result, null, 2) + "\n");
