import { randomUUID } from "node:crypto";
import { CommandService, CommandState } from "../../gen/umw/v1/command_pb.js";
import { QueryService } from "../../gen/umw/v1/query_pb.js";
import { RealtimeService } from "../../gen/umw/v1/realtime_pb.js";
import { createClient, type MeshClient } from "../../runtime/client.js";
import { Code, RpcError } from "../../runtime/errors.js";
import { counter, defaultRegistry, gauge, histogram, PIPELINE_BUCKETS, type Registry } from "../../runtime/metrics.js";
import type { ChannelCredentials } from "@grpc/grpc-js";

/** The stages of one canary transaction, in order; each one's latency is measured from the accept. */
export const CANARY_STAGES = ["accept", "applied", "visible", "received"] as const;
export type CanaryStage = (typeof CANARY_STAGES)[number];

export interface CanaryOptions {
  readonly query: { address: string; credentials: ChannelCredentials };
  readonly command: { address: string; credentials: ChannelCredentials };
  readonly realtime: { address: string; credentials: ChannelCredentials };
  readonly tenant: string;
  readonly type: string;
  /** The one entity this canary updates run after run (created by the first run). */
  readonly entityId?: string;
  /** Bound of one whole transaction. */
  readonly timeoutMs: number;
  /** Sent as `authorization: Bearer <token>` on every call, for a mesh that authenticates users. */
  readonly token?: string;
  readonly registry?: Registry;
}

export interface CanaryResult {
  readonly ok: boolean;
  /** The stage that failed. */
  readonly failedStage?: CanaryStage;
  readonly error?: string;
  readonly entityId: string;
  readonly version?: string;
  /** Seconds: the write's own latency (accept), then each later stage since the accept. */
  readonly seconds: Partial<Record<CanaryStage, number>>;
}

/**
 * One end-to-end transaction through the mesh, the way a client sees it: open a subscription on the
 * canary's entity (and wait until it is attached: its snapshot arrived), write the entity
 * (CommandService, a fresh idempotency key), watch the command until it is applied, read it back
 * at that version through the query service (cache-first, read-your-writes), and receive the
 * change on the subscription. Each stage's latency since the accept, the result, and the time of
 * the last success are exported as `umw_canary_*`.
 */
export class Canary {
  private readonly query: MeshClient<typeof QueryService>;
  private readonly command: MeshClient<typeof CommandService>;
  private readonly realtime: MeshClient<typeof RealtimeService>;
  readonly entityId: string;
  private exists = false;
  private readonly metrics;

  constructor(private readonly options: CanaryOptions) {
    this.query = createClient(QueryService, options.query.address, options.query.credentials);
    this.command = createClient(CommandService, options.command.address, options.command.credentials);
    this.realtime = createClient(RealtimeService, options.realtime.address, options.realtime.credentials);
    this.entityId = options.entityId ?? `canary-${randomUUID().slice(0, 8)}`;
    const registry = options.registry ?? defaultRegistry;
    this.metrics = {
      runs: counter<"result">(registry, { name: "umw_canary_runs_total", help: "Canary transactions, by result (success | failure).", labelNames: ["result"] }),
      failures: counter<"stage">(registry, { name: "umw_canary_failures_total", help: "Failed canary transactions, by the stage that failed.", labelNames: ["stage"] }),
      stage: histogram<"stage">(registry, {
        name: "umw_canary_stage_seconds",
        help: "Canary latency per stage: accept = the write call; applied, visible (read back through the query service), received (on a subscription) = seconds since the accept.",
        labelNames: ["stage"],
        buckets: PIPELINE_BUCKETS,
      }),
      lastSuccess: gauge(registry, { name: "umw_canary_last_success_timestamp_seconds", help: "Unix time of the last successful canary transaction." }),
    };
    for (const result of ["success", "failure"]) this.metrics.runs.inc({ result }, 0);
    for (const stage of CANARY_STAGES) this.metrics.failures.inc({ stage }, 0);
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return { ...extra, ...(this.options.token ? { authorization: `Bearer ${this.options.token}` } : {}) };
  }

  async runOnce(): Promise<CanaryResult> {
    const { tenant, type } = this.options;
    const id = this.entityId;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(new RpcError(Code.DEADLINE_EXCEEDED, "CANARY_TIMEOUT", `the canary transaction took over ${this.options.timeoutMs} ms`)), this.options.timeoutMs);
    const seconds: Partial<Record<CanaryStage, number>> = {};
    let stage: CanaryStage = "accept";
    let version: bigint | undefined;
    const deadline = Date.now() + this.options.timeoutMs;
    const call = { signal: abort.signal, deadline, headers: this.headers() };
    try {
      // The subscription first, attached before the write, so the change cannot slip past it.
      const stream = this.realtime.subscribe({ tenant, topics: [{ target: { case: "entity", value: { tenant, type, id } } }], snapshot: true }, call)[Symbol.asyncIterator]();
      const first = await stream.next();
      if (first.done || first.value.message.case !== "snapshot") throw new Error(`the subscription sent ${first.done ? "nothing" : first.value.message.case} before its snapshot`);
      const snapshotVersion = first.value.message.value.entities.find((entity) => entity.id === id)?.version;
      if (snapshotVersion !== undefined) this.exists = true;

      const data = { title: `canary ${new Date().toISOString()}` };
      const write = { ...call, headers: this.headers({ "idempotency-key": `"canary-${randomUUID()}"` }) };
      const started = performance.now();
      const since = () => (performance.now() - started) / 1000;
      const response = this.exists
        ? await this.command.updateEntity({ tenant, type, id, data }, write)
        : await this.command.createEntity({ tenant, type, id, data }, write);
      seconds.accept = since();
      const commandId = response.receipt?.commandId;
      if (!commandId) throw new Error("the write answered without a command id");

      stage = "applied";
      for await (const update of this.command.watchCommand({ tenant, commandId }, call)) {
        const state = update.command?.state;
        if (state === CommandState.APPLIED) {
          version = update.command!.version;
          break;
        }
        if (state === CommandState.REJECTED || state === CommandState.FAILED) {
          throw new Error(`the command ended ${CommandState[state]}: ${update.command?.error?.message ?? ""}`);
        }
      }
      if (version === undefined) throw new Error("the command watch ended before the command was applied");
      this.exists = true;
      seconds.applied = since();

      stage = "visible";
      const read = await this.query.getEntity({ tenant, type, id, minVersion: version }, call);
      if ((read.entity?.version ?? 0n) < version) throw new Error(`read back version ${read.entity?.version} below ${version}`);
      seconds.visible = since();

      stage = "received";
      for (;;) {
        const next = await stream.next();
        if (next.done) throw new Error("the subscription ended before the change arrived");
        const message = next.value.message;
        if (message.case === "change" && message.value.entity?.id === id && message.value.entity.version >= version) break;
        if (message.case === "reset") throw new Error("the subscription was reset");
      }
      seconds.received = since();
      await stream.return?.();

      for (const [name, value] of Object.entries(seconds)) this.metrics.stage.observe({ stage: name }, value);
      this.metrics.runs.inc({ result: "success" });
      this.metrics.lastSuccess.set(Date.now() / 1000);
      return { ok: true, entityId: id, version: String(version), seconds };
    } catch (error) {
      const reason = abort.signal.aborted ? (abort.signal.reason as Error) : (error as Error);
      this.metrics.runs.inc({ result: "failure" });
      this.metrics.failures.inc({ stage });
      // An entity that already exists (another canary run created it): update it next time.
      if (error instanceof RpcError && error.reason === "ENTITY_ALREADY_EXISTS") this.exists = true;
      return { ok: false, failedStage: stage, error: reason?.message ?? String(reason), entityId: id, ...(version !== undefined && { version: String(version) }), seconds };
    } finally {
      clearTimeout(timer);
      abort.abort();
    }
  }

  close(): void {
    this.query.close();
    this.command.close();
    this.realtime.close();
  }
}
