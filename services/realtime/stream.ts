import type { MessageInitShape } from "@bufbuild/protobuf";
import type { CommandStatus } from "../../gen/umw/v1/command_pb.js";
import type { Entity } from "../../gen/umw/v1/entity_pb.js";
import type { SubscribeResponseSchema } from "../../gen/umw/v1/realtime_pb.js";
import type { CallContext } from "../../runtime/call-context.js";
import { Code, RpcError } from "../../runtime/errors.js";
import { entityKey } from "../../runtime/entity.js";
import type { HubEvent } from "./events.js";
import type { RealtimeLimits } from "./limits.js";
import type { Caller, TopicTarget } from "./policy.js";
import type { Position } from "./position.js";
import type { Snapshot } from "./snapshot-source.js";

/** A SubscribeResponse: a message, or (changes, when the host encodes them) its bytes, which the server writes as they are. */
export type StreamMessage = MessageInitShape<typeof SubscribeResponseSchema> | Uint8Array;

/** One subscription, validated, authorized and admitted. */
export interface StreamPlan {
  readonly tenant: string;
  readonly caller: Caller;
  readonly topics: readonly TopicTarget[];
  /** tenant/type/id of each entity topic (deduplicated). */
  readonly entityKeys: readonly string[];
  /** tenant/type of each type topic (deduplicated). */
  readonly typeKeys: readonly string[];
  /** tenant + principal, when the stream follows the caller's own commands. */
  readonly commandKey: string | undefined;
  readonly snapshot: boolean;
  readonly resume: Position | undefined;
  /** What the per-connection limit counts by. */
  readonly connectionKey: string;
  /** ms since the epoch at which the caller's token expires. */
  readonly expiresAt: number | undefined;
}

/** What a stream needs of its hub. */
export interface StreamHost {
  readonly limits: RealtimeLimits;
  /** Number of partitions seen so far: lets a position scan stop early. */
  readonly partitionCount: number;
  /** The hub's position, with the given partitions lowered (to just before a pending event). */
  positionToken(lowered: ReadonlyMap<number, number> | undefined, time: number | undefined): string;
  attach(stream: Stream): void;
  detach(stream: Stream): void;
  /** Queues what the stream missed since `position`; the reset reason when history cannot cover it. */
  replay(stream: Stream, position: Position): RpcError | undefined;
  snapshot(plan: StreamPlan): Promise<Snapshot>;
  recentCommands(plan: StreamPlan, sinceMs: number | undefined): Promise<CommandStatus[]>;
  noteSlow(stream: Stream, why: string): void;
  /** A pending change was replaced by a newer one (metrics). */
  noteConflated(): void;
  /**
   * Optional: the encoded `SubscribeResponse{change, position}` of a change, its pieces shared by
   * every stream (see RealtimeHub.encodeChange). Without it, changes are plain message objects.
   */
  encodeChange?(event: HubEvent, conflated: boolean, position: string): Uint8Array;
}

/** A change or command status waiting for the client; its slot fixes its place and the stream's position. */
class Pending {
  conflated = false;
  constructor(
    public event: HubEvent | undefined,
    public command: CommandStatus | undefined,
    readonly key: string,
    /** -1 for command statuses: they are not part of the Kafka positions. */
    readonly partition: number,
    /** Offset of the oldest undelivered event this slot stands for. */
    readonly slot: number,
  ) {}
}

const now = () => performance.now();

/**
 * The per-stream side of the hub: a queue keyed by entity that conflates under pressure, the
 * snapshot/live hand-over, positions, heartbeats, and the end of a stream (slow, expired, failed).
 *
 * The hub offers events synchronously as it consumes them; the generator hands them to the
 * runtime, which asks for the next one only once HTTP/2 flow control let the last one through.
 * So "the runtime has not taken the last message for slowAfterMs" is exactly "writes wait on drain".
 */
export class Stream {
  private items: (Pending | undefined)[] = [];
  private head = 0;
  /** Newest pending item per key. */
  private latest: Map<string, Pending> | undefined;
  /** Versions reported by the snapshot, for entities with no newer change delivered yet. */
  private versions: Map<string, number> | undefined;
  private lastOffered: HubEvent | undefined;
  private wakeup: (() => void) | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** While the hub replays history into the queue, a bound is reported instead of ending the stream. */
  private replaying = false;
  private overflowed = false;
  /** When the last message was handed to the runtime and not yet taken; 0 when taken. */
  parkedSince = 0;
  lastSentAt = now();
  heartbeatDue = false;
  failure: RpcError | undefined;
  private readonly onAbort = () => this.wake();

  constructor(
    private readonly host: StreamHost,
    readonly plan: StreamPlan,
    private readonly signal: AbortSignal,
    /** The call's response headers: set before they are sent, and sent once the stream is open. */
    private readonly response: Pick<CallContext, "setHeader" | "sendHeaders">,
    /** Called once when the stream closes (the hub releases its admission counts). */
    private readonly onClose?: () => void,
  ) {
    signal.addEventListener("abort", this.onAbort, { once: true });
    if (plan.expiresAt !== undefined) this.armExpiry(plan.expiresAt);
  }

  get pending(): number {
    return this.items.length - this.head;
  }

  /** Waiting for something to send. */
  get idle(): boolean {
    return this.wakeup !== undefined;
  }

  matches(event: HubEvent): boolean {
    return this.plan.entityKeys.includes(event.key) || this.plan.typeKeys.includes(event.typeKey);
  }

  offer(event: HubEvent, at: number): void {
    if (this.failure !== undefined || this.lastOffered === event) return;
    this.lastOffered = event; // an event matching two topics of the stream is queued once
    this.enqueue(event.key, event, undefined, event.partition, event.offset, at);
  }

  offerCommand(status: CommandStatus, at: number): void {
    if (this.failure !== undefined) return;
    this.enqueue(`command:${status.commandId}`, undefined, status, -1, 0, at);
  }

  /** Replays history into the queue; false when it would exceed the pending bound (the caller resets instead). */
  replayInto(events: Iterable<HubEvent>): boolean {
    this.replaying = true;
    const at = now();
    try {
      for (const event of events) {
        if (!this.matches(event)) continue;
        this.offer(event, at);
        if (this.overflowed) break;
      }
    } finally {
      this.replaying = false;
    }
    if (!this.overflowed) return true;
    this.overflowed = false;
    this.clearQueue();
    return false;
  }

  private isSlow(at: number): boolean {
    return (this.parkedSince !== 0 && at - this.parkedSince >= this.host.limits.slowAfterMs) || this.pending >= this.host.limits.maxQueuedEvents;
  }

  private enqueue(key: string, event: HubEvent | undefined, command: CommandStatus | undefined, partition: number, slot: number, at: number): void {
    const latest = (this.latest ??= new Map());
    const existing = latest.get(key);
    if (existing !== undefined && this.isSlow(at)) {
      // The client is behind: the newer state replaces the pending one, in its place in the queue.
      existing.event = event;
      existing.command = command;
      existing.conflated = true;
      this.host.noteConflated();
      return;
    }
    if (existing === undefined && latest.size >= this.host.limits.maxPendingEntities) {
      if (this.replaying) this.overflowed = true;
      else this.slowConsumer(`more than ${this.host.limits.maxPendingEntities} entities pending`);
      return;
    }
    const item = new Pending(event, command, key, partition, slot);
    this.items.push(item);
    latest.set(key, item);
    this.wake();
  }

  private take(): Pending | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head]!;
    this.items[this.head++] = undefined;
    if (this.head === this.items.length) {
      this.items.length = 0;
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items.splice(0, this.head);
      this.head = 0;
    }
    if (this.latest?.get(item.key) === item) this.latest.delete(item.key);
    return item;
  }

  private clearQueue(): void {
    this.items = [];
    this.head = 0;
    this.latest = undefined;
  }

  /**
   * Everything matching at or below the returned offsets was delivered (or superseded by a state
   * that was): the hub's head, lowered to just before the oldest pending event of each partition.
   */
  position(): string {
    let lowered: Map<number, number> | undefined;
    for (let i = this.head; i < this.items.length; i++) {
      const item = this.items[i]!;
      if (item.partition < 0) continue;
      lowered ??= new Map();
      if (!lowered.has(item.partition)) {
        lowered.set(item.partition, item.slot - 1);
        if (lowered.size >= this.host.partitionCount) break;
      }
    }
    return this.host.positionToken(lowered, this.plan.commandKey === undefined ? undefined : Date.now());
  }

  /** Takes the snapshot's versions as already delivered and drops queued changes it already reflects. */
  private applySnapshot(entities: readonly Entity[]): void {
    if (entities.length === 0) return;
    const versions = (this.versions = new Map());
    for (const entity of entities) versions.set(entityKey(entity.tenant, entity.type, entity.id), Number(entity.version));
    if (this.pending === 0) return;
    const kept: Pending[] = [];
    for (let i = this.head; i < this.items.length; i++) {
      const item = this.items[i]!;
      const seen = item.event ? versions.get(item.event.key) : undefined;
      if (seen === undefined || item.event!.version > seen) kept.push(item);
    }
    this.items = kept;
    this.head = 0;
    this.latest = new Map(kept.map((item) => [item.key, item]));
  }

  wake(): void {
    const wakeup = this.wakeup;
    if (wakeup) {
      this.wakeup = undefined;
      wakeup();
    }
  }

  /** Ends the stream with `error` as soon as the runtime asks for the next message. */
  fail(error: RpcError): void {
    if (this.failure !== undefined || this.closed) return;
    this.failure = error;
    this.host.detach(this);
    this.clearQueue();
    this.versions = undefined;
    this.wake();
  }

  slowConsumer(why: string): void {
    if (this.failure !== undefined || this.closed) return;
    const position = this.position();
    this.host.noteSlow(this, why);
    this.fail(new RpcError(Code.RESOURCE_EXHAUSTED, "SLOW_CONSUMER", `the client reads too slowly (${why}); resume from the position`, { position }));
  }

  private armExpiry(expiresAt: number): void {
    const delay = expiresAt - Date.now();
    if (delay > 0) {
      this.expiryTimer = setTimeout(() => this.armExpiry(expiresAt), Math.min(delay, 2 ** 31 - 1));
      return;
    }
    this.expiryTimer = undefined;
    const position = this.position();
    this.fail(
      new RpcError(Code.UNAUTHENTICATED, "TOKEN_EXPIRED", "the token expired; reconnect with a fresh one and resume from the position", {
        position,
        expiredAt: new Date(expiresAt).toISOString(),
      }),
    );
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.signal.removeEventListener("abort", this.onAbort);
    this.host.detach(this);
    this.clearQueue();
    this.versions = undefined;
    this.onClose?.();
  }

  private out(message: Exclude<StreamMessage, Uint8Array>["message"]): StreamMessage {
    const at = now();
    this.parkedSince = at;
    this.lastSentAt = at;
    this.heartbeatDue = false;
    return { message, position: this.position() };
  }

  /** A change encoded by the host: the same SubscribeResponse on the wire, its pieces encoded once for every stream. */
  private outEncoded(encode: NonNullable<StreamHost["encodeChange"]>, event: HubEvent, conflated: boolean): Uint8Array {
    const at = now();
    this.parkedSince = at;
    this.lastSentAt = at;
    this.heartbeatDue = false;
    return encode.call(this.host, event, conflated, this.position());
  }

  private render(item: Pending): StreamMessage | undefined {
    if (item.command) return this.out({ case: "command", value: item.command });
    const event = item.event!;
    if (this.versions !== undefined) {
      const seen = this.versions.get(event.key);
      if (seen !== undefined) {
        if (event.version <= seen) return undefined; // the snapshot already had it
        this.versions.delete(event.key);
      }
    }
    if (this.host.encodeChange) return this.outEncoded(this.host.encodeChange, event, item.conflated);
    return this.out({ case: "change", value: { kind: event.kind, entity: event.entity, conflated: item.conflated } });
  }

  private checkFailed(): void {
    if (this.failure) throw this.failure;
  }

  /**
   * Attach first (so nothing published from now on is missed), then replay or read the snapshot
   * while live events queue up, then send: reset, snapshot, and every queued and later change the
   * snapshot does not already reflect. Closes the stream when it ends, however it ends.
   */
  async *run(): AsyncGenerator<StreamMessage, void, undefined> {
    try {
      const { host, plan } = this;
      this.checkFailed();
      host.attach(this);
      // Synchronous with attach: no event falls between the replay and the live feed.
      const reset = plan.resume ? host.replay(this, plan.resume) : undefined;
      // A resumed client has its state: it needs a snapshot only when the resume failed.
      const withSnapshot = plan.resume ? reset !== undefined : plan.snapshot;
      // Accepted: the client learns it now, not with the first change, which may be long in coming. With a
      // snapshot, after it (its truncation is a header), and the snapshot is the first message anyway.
      if (!withSnapshot) this.response.sendHeaders?.();
      let snapshot: Snapshot | undefined;
      if (withSnapshot) snapshot = await host.snapshot(plan);
      let commands: CommandStatus[] = [];
      if (plan.commandKey !== undefined && (withSnapshot || plan.resume)) {
        commands = await host.recentCommands(plan, withSnapshot ? undefined : plan.resume?.time);
      }
      if (this.signal.aborted) return;
      this.checkFailed();
      if (snapshot) {
        this.applySnapshot(snapshot.entities);
        if (snapshot.truncated) this.response.setHeader("x-umw-snapshot-truncated", "true");
        this.response.sendHeaders?.();
      }
      if (reset) {
        yield this.out({ case: "reset", value: { reason: reset.toStatus() } });
        this.parkedSince = 0;
      }
      if (snapshot) {
        yield this.out({ case: "snapshot", value: { entities: snapshot.entities, truncated: snapshot.truncated } });
        this.parkedSince = 0;
      }
      for (const status of commands) {
        yield this.out({ case: "command", value: status });
        this.parkedSince = 0;
      }
      for (;;) {
        if (this.signal.aborted) return;
        this.checkFailed();
        const item = this.take();
        if (item) {
          const message = this.render(item);
          if (message) {
            yield message;
            this.parkedSince = 0;
          }
          continue;
        }
        if (this.heartbeatDue) {
          yield this.out({ case: "heartbeat", value: {} });
          this.parkedSince = 0;
          continue;
        }
        await new Promise<void>((resolve) => (this.wakeup = resolve));
      }
    } finally {
      this.close();
    }
  }
}
