import { randomBytes } from "node:crypto";
import { type SubscribeRequest, type RealtimeService } from "../../gen/umw/v1/realtime_pb.js";
import type { CommandStatus } from "../../gen/umw/v1/command_pb.js";
import type { EventBus, IncomingMessage, Subscription } from "../../runtime/bus.js";
import type { CallContext } from "../../runtime/call-context.js";
import { checkName, checkType, entityKey } from "../../runtime/entity.js";
import { Code, RpcError, invalidArgument, unavailable } from "../../runtime/errors.js";
import type { Logger } from "../../runtime/logger.js";
import type { ServableHandlers } from "../../runtime/service-definition.js";
import { changeField, changeResponse, positionField } from "./change-wire.js";
import type { CommandFeed, CommandFeedSubscription, CommandUpdate } from "./command-feed.js";
import { decodeEvent, typeKey, type HubEvent } from "./events.js";
import { PartitionHistory, RecentIds } from "./history.js";
import { DEFAULT_LIMITS, type RealtimeLimits } from "./limits.js";
import { callerOf, HEADERS, tenantIsolation, type SubscriptionPolicy, type TopicTarget } from "./policy.js";
import { decodePosition, encodePosition, type Position } from "./position.js";
import type { EntitySnapshotSource, Snapshot } from "./snapshot-source.js";
import { Stream, type StreamHost, type StreamMessage, type StreamPlan } from "./stream.js";

export interface RealtimeHubOptions {
  readonly bus: EventBus;
  /** The entity-events topic (topicNames(config).entityEvents). */
  readonly topic: string;
  readonly snapshots: EntitySnapshotSource;
  /** Source of own-command statuses; without it, own_commands topics are refused. */
  readonly commands?: CommandFeed;
  readonly policy?: SubscriptionPolicy;
  readonly limits?: Partial<RealtimeLimits>;
  readonly log: Logger;
  /** Consumer group: by default `<groupPrefix>umw-realtime.<epoch>`, unique per hub instance, so every hub sees every event. */
  readonly group?: string;
  /** Prefix of the default group name (the deployment's topic prefix). */
  readonly groupPrefix?: string;
  /** mTLS peers trusted to assert x-umw-principal and x-umw-connection-id (config.trustedPrincipalPeers); default the edge. */
  readonly trustedPeers?: readonly string[];
  /**
   * The configured resource types (config.resources): a topic on any other type is NOT_FOUND
   * (UNKNOWN_RESOURCE_TYPE) at once, as a read of it is. Unset: any well-formed type is accepted.
   */
  readonly resourceTypes?: readonly string[];
  /**
   * Start from the oldest retained event instead of the newest. For a fresh topic (tests, bench) it
   * closes the moment between joining the group and the first fetch; on a long-lived topic it
   * replays the whole retention through the ring, so leave it off there.
   */
  readonly fromBeginning?: boolean;
}

export interface RealtimeHubStats {
  readonly epoch: string;
  readonly streams: number;
  /** Last offset handled, per partition. */
  readonly heads: Readonly<Record<number, number>>;
  readonly consumed: number;
  readonly duplicates: number;
  readonly replays: number;
  readonly resets: number;
  readonly slowConsumers: number;
  /** Pending changes replaced by a newer state of the same entity (for slow readers). */
  readonly conflated: number;
}

const commandKeyOf = (tenant: string, principal: string) => `${tenant}\n${principal}`;

function addTo<K>(index: Map<K, Set<Stream>>, key: K, stream: Stream): void {
  let set = index.get(key);
  if (!set) index.set(key, (set = new Set()));
  set.add(stream);
}

function removeFrom<K>(index: Map<K, Set<Stream>>, key: K, stream: Stream): void {
  const set = index.get(key);
  if (set?.delete(stream) && set.size === 0) index.delete(key);
}

/**
 * The real-time hub: consumes every domain event (own consumer group), keeps a bounded history per
 * partition, and fans each event out to the streams subscribed to its entity or its type (index
 * lookups, so an event touches only the streams it concerns).
 */
export class RealtimeHub implements StreamHost {
  /** Changes whenever history is lost: each hub instance has its own. */
  readonly epoch = randomBytes(6).toString("base64url");
  readonly limits: RealtimeLimits;
  readonly handlers: ServableHandlers<typeof RealtimeService>;
  private readonly log: Logger;
  private readonly policy: SubscriptionPolicy;
  private readonly trustedPeers: ReadonlySet<string>;
  private readonly heads = new Map<number, number>();
  private readonly histories = new Map<number, PartitionHistory>();
  private readonly recentIds: RecentIds;
  private readonly byEntity = new Map<string, Set<Stream>>();
  private readonly byType = new Map<string, Set<Stream>>();
  private readonly byCommands = new Map<string, Set<Stream>>();
  private readonly streams = new Set<Stream>();
  private readonly perConnection = new Map<string, number>();
  private readonly perTenant = new Map<string, number>();
  private headToken: string | undefined;
  private subscription: Subscription | undefined;
  private commandSubscription: CommandFeedSubscription | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  private readonly counters = { consumed: 0, duplicates: 0, replays: 0, resets: 0, slowConsumers: 0, conflated: 0 };

  constructor(private readonly options: RealtimeHubOptions) {
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.log = options.log.child({ component: "realtime-hub", epoch: this.epoch });
    this.policy = options.policy ?? tenantIsolation;
    this.trustedPeers = new Set(options.trustedPeers ?? ["edge"]);
    this.recentIds = new RecentIds(this.limits.dedupWindow);
    this.handlers = { subscribe: (request, ctx) => this.subscribe(request, ctx) };
  }

  get partitionCount(): number {
    return this.heads.size;
  }

  /** Joins the bus with a group of its own and starts the sweep; resolves once the consumer runs. */
  async start(): Promise<void> {
    const group = this.options.group ?? `${this.options.groupPrefix ?? ""}umw-realtime.${this.epoch}`;
    this.subscription = await this.options.bus.subscribe({
      topics: [this.options.topic],
      group,
      fromBeginning: this.options.fromBeginning ?? false,
      handle: this.handle,
    });
    if (this.options.commands) {
      try {
        this.commandSubscription = await this.options.commands.start(this.onCommand, () => this.byCommands.size > 0);
      } catch (error) {
        await this.subscription.stop().catch(() => undefined);
        this.subscription = undefined;
        throw error;
      }
    }
    this.sweeper = setInterval(this.sweep, this.limits.sweepIntervalMs);
    this.sweeper.unref();
    this.log.info({ topic: this.options.topic, group }, "realtime hub consuming");
  }

  /** Stops consuming and ends every stream still open with UNAVAILABLE (the server normally ends them first). */
  async stop(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
    for (const stream of [...this.streams]) stream.fail(unavailable("SHUTTING_DOWN", "the realtime hub is stopping; reconnect and resume", { position: stream.position() }));
    await Promise.allSettled([this.subscription?.stop(), this.commandSubscription?.stop()]);
    this.subscription = undefined;
    this.commandSubscription = undefined;
  }

  stats(): RealtimeHubStats {
    return { epoch: this.epoch, streams: this.streams.size, heads: Object.fromEntries(this.heads), ...this.counters };
  }

  // ---- consuming -------------------------------------------------------------------------------

  private handled = 0;

  private readonly handle = async (message: IncomingMessage): Promise<void> => {
    const partition = message.partition;
    const offset = Number(message.offset);
    const head = this.heads.get(partition);
    if (head !== undefined && offset <= head) return; // redelivered after a rebalance or reconnect
    this.heads.set(partition, offset);
    this.headToken = undefined;
    this.counters.consumed++;
    let event: HubEvent | undefined;
    try {
      event = decodeEvent(message, performance.now());
    } catch (error) {
      this.log.warn({ err: error, partition, offset }, "skipping an undecodable domain event");
    }
    if (event) {
      if (this.recentIds.add(event.id)) {
        this.history(partition).push(event);
        this.dispatch(event);
      } else {
        this.counters.duplicates++;
      }
    }
    // A batch is handed over message by message in microtasks: let the writes of the streams run now and then.
    if (++this.handled % 64 === 0) await new Promise((resolve) => setImmediate(resolve));
  };

  private history(partition: number): PartitionHistory {
    let history = this.histories.get(partition);
    if (!history) this.histories.set(partition, (history = new PartitionHistory(this.limits.historyPerPartition)));
    return history;
  }

  private dispatch(event: HubEvent): void {
    const at = performance.now();
    const byEntity = this.byEntity.get(event.key);
    if (byEntity) for (const stream of byEntity) stream.offer(event, at);
    const byType = this.byType.get(event.typeKey);
    if (byType) for (const stream of byType) stream.offer(event, at);
  }

  private readonly onCommand = (update: CommandUpdate): void => {
    const streams = this.byCommands.get(commandKeyOf(update.status.tenant, update.principal));
    if (!streams) return;
    const at = performance.now();
    for (const stream of streams) stream.offerCommand(update.status, at);
  };

  /** Heartbeats for idle streams; SLOW_CONSUMER for streams whose client took nothing for too long. */
  private readonly sweep = (): void => {
    const at = performance.now();
    const { heartbeatMs, maxStuckMs } = this.limits;
    for (const stream of this.streams) {
      if (stream.failure) continue;
      if (stream.parkedSince !== 0) {
        if (stream.pending > 0 && at - stream.parkedSince >= maxStuckMs) stream.slowConsumer(`nothing taken for ${maxStuckMs} ms`);
      } else if (stream.idle && at - stream.lastSentAt >= heartbeatMs) {
        stream.heartbeatDue = true;
        stream.wake();
      }
    }
  };

  // ---- StreamHost ------------------------------------------------------------------------------

  positionToken(lowered: ReadonlyMap<number, number> | undefined, time: number | undefined): string {
    if (lowered === undefined && time === undefined) return (this.headToken ??= encodePosition(this.epoch, this.heads));
    const offsets: [number, number][] = [];
    for (const [partition, offset] of this.heads) offsets.push([partition, lowered?.get(partition) ?? offset]);
    return encodePosition(this.epoch, offsets, time);
  }

  attach(stream: Stream): void {
    const { plan } = stream;
    this.streams.add(stream);
    for (const key of plan.entityKeys) addTo(this.byEntity, key, stream);
    for (const key of plan.typeKeys) addTo(this.byType, key, stream);
    if (plan.commandKey !== undefined) addTo(this.byCommands, plan.commandKey, stream);
  }

  detach(stream: Stream): void {
    const { plan } = stream;
    this.streams.delete(stream);
    for (const key of plan.entityKeys) removeFrom(this.byEntity, key, stream);
    for (const key of plan.typeKeys) removeFrom(this.byType, key, stream);
    if (plan.commandKey !== undefined) removeFrom(this.byCommands, plan.commandKey, stream);
  }

  replay(stream: Stream, position: Position): RpcError | undefined {
    const exceeded = (why: string) => {
      this.counters.resets++;
      return new RpcError(Code.OUT_OF_RANGE, "HISTORY_EXCEEDED", `cannot resume: ${why}; a fresh snapshot follows`, { epoch: this.epoch });
    };
    if (position.epoch !== this.epoch) return exceeded("the position comes from another hub instance (restarted, or another replica)");
    for (const [partition, history] of this.histories) {
      if (!history.covers(position.offsets.get(partition))) return exceeded(`events of partition ${partition} after the position are no longer kept`);
    }
    const missed = (function* (histories: Map<number, PartitionHistory>) {
      for (const [partition, history] of histories) yield* history.since(position.offsets.get(partition));
    })(this.histories);
    if (!stream.replayInto(missed)) return exceeded(`more than ${this.limits.maxPendingEntities} entities changed since the position`);
    this.counters.replays++;
    return undefined;
  }

  async snapshot(plan: StreamPlan): Promise<Snapshot> {
    const entities = plan.topics.filter((topic) => topic.kind === "entity");
    const types = plan.topics.filter((topic) => topic.kind === "type");
    if (entities.length === 0 && types.length === 0) return { entities: [], truncated: false };
    try {
      return await this.options.snapshots.read({ entities, types, limitPerType: this.limits.snapshotLimit });
    } catch (error) {
      this.log.error({ err: error }, "snapshot read failed");
      throw unavailable("SNAPSHOT_UNAVAILABLE", "cannot read the current state now; retry");
    }
  }

  async recentCommands(plan: StreamPlan, sinceMs: number | undefined): Promise<CommandStatus[]> {
    const own = plan.topics.find((topic) => topic.kind === "ownCommands");
    if (!own || !this.options.commands) return [];
    const since = sinceMs !== undefined ? sinceMs - 2_000 : Date.now() - this.limits.commandCatchUpMs;
    try {
      return await this.options.commands.recent(own.tenant, own.principal, since, this.limits.commandCatchUpLimit);
    } catch (error) {
      this.log.error({ err: error }, "command catch-up read failed");
      throw unavailable("SNAPSHOT_UNAVAILABLE", "cannot read the command statuses now; retry");
    }
  }

  noteConflated(): void {
    this.counters.conflated++;
  }

  /**
   * A change's SubscribeResponse bytes (change-wire.ts): the change encoded once per event (an event
   * on an entity with 10 subscribers, or on a type with thousands, is otherwise encoded again for
   * each), the position once per token, and the whole response once per event and position. The
   * bytes live as long as the event does (in the history ring).
   */
  encodeChange(event: HubEvent, conflated: boolean, position: string): Uint8Array {
    if (conflated) return changeResponse((event.wireConflated ??= changeField(event, true)), this.positionBytes(position));
    if (event.responsePosition === position) return event.response!;
    const response = changeResponse((event.wire ??= changeField(event, false)), this.positionBytes(position));
    event.response = response;
    event.responsePosition = position;
    return response;
  }

  private lastPosition: { token: string; bytes: Buffer } | undefined;

  private positionBytes(token: string): Buffer {
    if (this.lastPosition?.token !== token) this.lastPosition = { token, bytes: positionField(token) };
    return this.lastPosition.bytes;
  }

  noteSlow(stream: Stream, why: string): void {
    this.counters.slowConsumers++;
    this.log.info({ tenant: stream.plan.tenant, connection: stream.plan.connectionKey, why }, "ending a slow stream");
  }

  // ---- Subscribe -------------------------------------------------------------------------------

  /**
   * Admission on the first message asked for, then the stream's own messages. Not a generator around
   * Stream.run: that would add a `yield*` (several promises) to every message of every stream.
   */
  subscribe(request: SubscribeRequest, ctx: CallContext): AsyncIterable<StreamMessage> {
    const open = async (): Promise<AsyncIterator<StreamMessage>> => {
      const plan = await this.plan(request, ctx);
      this.admit(plan);
      return new Stream(this, plan, ctx.signal, ctx, () => this.release(plan)).run();
    };
    return { [Symbol.asyncIterator]: () => new OpeningIterator(open) };
  }

  private checkKnownType(type: string): void {
    checkType(type);
    if (this.options.resourceTypes && !this.options.resourceTypes.includes(type)) {
      throw new RpcError(Code.NOT_FOUND, "UNKNOWN_RESOURCE_TYPE", `resource type ${JSON.stringify(type)} is not configured`, { type });
    }
  }

  /** Validates the request, reads the caller, checks the token's expiry and asks the policy. */
  private async plan(request: SubscribeRequest, ctx: CallContext): Promise<StreamPlan> {
    checkName("tenant", request.tenant);
    if (request.topics.length === 0) throw invalidArgument("NO_TOPICS", "subscribe to at least one topic", { field: "topics" });
    if (request.topics.length > this.limits.maxTopicsPerStream) {
      throw invalidArgument("TOO_MANY_TOPICS", `at most ${this.limits.maxTopicsPerStream} topics per stream`, { field: "topics" });
    }
    const { connectionId, ...caller } = callerOf(ctx, request.tenant, this.trustedPeers);
    const topics: TopicTarget[] = [];
    for (const [index, topic] of request.topics.entries()) {
      const { target } = topic;
      switch (target.case) {
        case "entity": {
          const tenant = target.value.tenant || request.tenant;
          checkName("tenant", tenant);
          this.checkKnownType(target.value.type);
          checkName("id", target.value.id);
          topics.push({ kind: "entity", tenant, type: target.value.type, id: target.value.id });
          break;
        }
        case "type":
          this.checkKnownType(target.value);
          topics.push({ kind: "type", tenant: request.tenant, type: target.value });
          break;
        case "ownCommands":
          if (!target.value) throw invalidArgument("EMPTY_TOPIC", `topics[${index}]: own_commands must be true`, { field: `topics[${index}]` });
          if (!this.options.commands) throw new RpcError(Code.UNIMPLEMENTED, "COMMANDS_NOT_AVAILABLE", "this hub does not follow command statuses");
          if (!caller.principal) throw new RpcError(Code.UNAUTHENTICATED, "NO_PRINCIPAL", "following own commands needs an authenticated principal");
          topics.push({ kind: "ownCommands", tenant: request.tenant, principal: caller.principal });
          break;
        default:
          throw invalidArgument("EMPTY_TOPIC", `topics[${index}] names no entity, type or own_commands`, { field: `topics[${index}]` });
      }
    }
    const { expiresAt } = caller;
    if (expiresAt !== undefined && expiresAt <= Date.now()) {
      throw new RpcError(Code.UNAUTHENTICATED, "TOKEN_EXPIRED", "the token has expired", { expiredAt: new Date(expiresAt).toISOString() });
    }
    await this.policy.authorize(caller, { tenant: request.tenant, topics });
    const resume = request.resumeToken ? decodePosition(request.resumeToken) : undefined;
    const own = topics.find((topic) => topic.kind === "ownCommands");
    return {
      tenant: request.tenant,
      caller,
      topics,
      entityKeys: [...new Set(topics.flatMap((t) => (t.kind === "entity" ? [entityKey(t.tenant, t.type, t.id)] : [])))],
      typeKeys: [...new Set(topics.flatMap((t) => (t.kind === "type" ? [typeKey(t.tenant, t.type)] : [])))],
      commandKey: own ? commandKeyOf(own.tenant, own.principal) : undefined,
      snapshot: request.snapshot,
      resume,
      // Per client connection when the edge names one, else per token subject, else per mTLS peer.
      connectionKey: connectionId ? `${ctx.peer ?? "anonymous"}/${connectionId}` : caller.user ? `user:${caller.principal}` : (ctx.peer ?? "anonymous"),
      expiresAt,
    };
  }

  /** Counts the stream against its connection and tenant, or refuses it. */
  private admit(plan: StreamPlan): void {
    const perConnection = this.perConnection.get(plan.connectionKey) ?? 0;
    if (perConnection >= this.limits.maxStreamsPerConnection) {
      throw new RpcError(Code.RESOURCE_EXHAUSTED, "TOO_MANY_STREAMS_PER_CONNECTION", `at most ${this.limits.maxStreamsPerConnection} open streams per connection`, {
        limit: String(this.limits.maxStreamsPerConnection),
      });
    }
    const perTenant = this.perTenant.get(plan.tenant) ?? 0;
    if (perTenant >= this.limits.maxStreamsPerTenant) {
      throw new RpcError(Code.RESOURCE_EXHAUSTED, "TOO_MANY_STREAMS_PER_TENANT", `at most ${this.limits.maxStreamsPerTenant} open streams per tenant on this hub`, {
        limit: String(this.limits.maxStreamsPerTenant),
        tenant: plan.tenant,
      });
    }
    this.perConnection.set(plan.connectionKey, perConnection + 1);
    this.perTenant.set(plan.tenant, perTenant + 1);
  }

  private release(plan: StreamPlan): void {
    const decrement = (map: Map<string, number>, key: string) => {
      const count = (map.get(key) ?? 1) - 1;
      if (count <= 0) map.delete(key);
      else map.set(key, count);
    };
    decrement(this.perConnection, plan.connectionKey);
    decrement(this.perTenant, plan.tenant);
  }
}

/** An iterator whose source is opened (asynchronously, possibly failing) on the first next(), then passed through as it is. */
class OpeningIterator<T> implements AsyncIterator<T> {
  private source: AsyncIterator<T> | undefined;
  private finished = false;

  constructor(private readonly open: () => Promise<AsyncIterator<T>>) {}

  next(): Promise<IteratorResult<T>> {
    if (this.source) return this.source.next();
    if (this.finished) return Promise.resolve({ done: true, value: undefined });
    return this.open().then(
      (source) => {
        this.source = source;
        return source.next();
      },
      (error: unknown) => {
        this.finished = true;
        throw error;
      },
    );
  }

  async return(value?: unknown): Promise<IteratorResult<T>> {
    this.finished = true;
    await this.source?.return?.(value as never);
    return { done: true, value: value as T };
  }
}
