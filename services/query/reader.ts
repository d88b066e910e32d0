import { randomUUID } from "node:crypto";
import type { Entity } from "../../gen/umw/v1/entity_pb.js";
import { checkName } from "../../runtime/entity.js";
import { Code, invalidArgument, RpcError, unavailable } from "../../runtime/errors.js";
import type { Logger } from "../../runtime/logger.js";
import type { CachePolicy } from "../../runtime/resources.js";
import { isBackendFailure, withTimeout } from "./backend.js";
import type { Cache, Fill, SetResult } from "../../runtime/cache/cache.js";
import { entityEntry, jitter, negativeEntry, type CacheEntry } from "../../runtime/cache/entry.js";
import { cacheKey, type CacheKey } from "../../runtime/cache/keys.js";
import { versionedWriter, type VersionedWriter } from "../../runtime/cache/versioned-writer.js";
import type { CacheStatus } from "./cache-status.js";
import type { Resource, ResourceCatalog } from "./catalog.js";
import { L1Cache } from "./l1.js";
import type { QueryMetrics } from "./metrics.js";
import { SingleFlight } from "./single-flight.js";

/** What a read answers: the entity (undefined = NOT_FOUND) and how the cache produced it. */
export interface ReadResult {
  readonly entity: Entity | undefined;
  readonly status: CacheStatus;
}

export interface ReadRequest {
  readonly tenant: string;
  readonly type: string;
  readonly id: string;
  /** Read-your-writes: a copy older than this is no answer (0 = any). */
  readonly minVersion?: bigint;
}

export interface EntityReaderOptions {
  readonly cache: Cache;
  readonly catalog: ResourceCatalog;
  readonly metrics: QueryMetrics;
  readonly log: Logger;
  /** Prepended to every Redis name (test isolation, several deployments on one Redis). */
  readonly keyPrefix?: string;
  /** Loads tried for a min_version read before REPLICA_LAGGING (default 3), backoff doubling from rywBackoffMs (25). */
  readonly rywAttempts?: number;
  readonly rywBackoffMs?: number;
  /** Lease rounds a waiter sits through (a loader that dies or stalls) before LOAD_TIMEOUT (default 3). */
  readonly maxLeaseRounds?: number;
  readonly l1MaxEntries?: number;
  /** Randomness for TTL jitter and XFetch (tests make it deterministic). */
  readonly random?: () => number;
}

/** Largest BatchGetEntities. */
export const MAX_BATCH_IDS = 500;

/** A finished load as every waiter of the key sees it. */
interface Outcome {
  readonly entry: CacheEntry;
  /** "load": this instance loaded; "peer": another instance's load answered. */
  readonly source: "load" | "peer";
  readonly stored: boolean;
  /** Why it was not stored. */
  readonly detail?: string;
}

interface Target {
  readonly key: CacheKey;
  readonly resource: Resource;
  readonly tenant: string;
  readonly type: string;
  readonly id: string;
  readonly labels: { readonly tenant: string; readonly type: string };
}

/**
 * Read-through cache of entities: L1 (optional) → cache (Redis) → backend, with one load per key
 * across all instances (in-process single-flight + cache lease + fill announcements), versioned
 * writes, negative caching, jittered TTLs, XFetch early refresh, serve-stale on backend failure,
 * and read-your-writes through min_version. Writes go through `writer`, the shared
 * VersionedWriter (runtime/cache) the cache updater uses too, bound to this reader's cache, key
 * prefix and policies, and dropping this instance's L1 copy of every key it writes.
 */
export class EntityReader {
  private readonly cache: Cache;
  private readonly catalog: ResourceCatalog;
  private readonly metrics: QueryMetrics;
  private readonly log: Logger;
  private readonly prefix: string;
  private readonly random: () => number;
  private readonly flights = new SingleFlight<Outcome>();
  private readonly l1: L1Cache;
  private readonly background = new Set<Promise<void>>();
  private readonly refreshing = new Set<string>();
  private lastCacheWarning = 0;
  /** Versioned write-through and invalidation of this reader's keys (embedded runs, tests, tools). */
  readonly writer: VersionedWriter;

  constructor(private readonly options: EntityReaderOptions) {
    this.cache = options.cache;
    this.catalog = options.catalog;
    this.metrics = options.metrics;
    this.log = options.log;
    this.prefix = options.keyPrefix ?? "";
    this.random = options.random ?? Math.random;
    this.l1 = new L1Cache(options.l1MaxEntries);
    this.writer = versionedWriter(this.cache, {
      keyPrefix: this.prefix,
      policyOf: (type) => this.catalog.find(type)?.policy,
      random: this.random,
      afterWrite: (key) => this.l1.delete(key.local),
    });
  }

  /** The cache names of one entity (for tests and tools). */
  keyOf(tenant: string, type: string, id: string): CacheKey {
    return cacheKey(this.prefix, tenant, type, id);
  }

  /**
   * `cancellation`: the caller's abort signal, or what holds it (a call context, whose signal is
   * made on first use): a cache hit never asks for it.
   */
  async get(request: ReadRequest, cancellation?: AbortSignal | { readonly signal: AbortSignal }): Promise<ReadResult> {
    const target = this.target(request.tenant, request.type, request.id);
    const minVersion = request.minVersion ?? 0n;
    if (minVersion < 0n) throw invalidArgument("INVALID_MIN_VERSION", "min_version must not be negative", { field: "min_version" });
    const { policy } = target.resource;
    const now = Date.now();

    if (policy.l1Ms > 0) {
      const local = this.l1.get(target.key.local, now);
      if (local && isFresh(local, now) && satisfies(local, minVersion)) return this.hit(target, local, "l1", now);
    }

    let cached: CacheEntry | undefined;
    let cacheDown = false;
    try {
      cached = await this.cache.get(target.key);
    } catch (error) {
      this.cacheFailed("get", error);
      cacheDown = true;
    }
    let forced = false;
    if (cached && isFresh(cached, now)) {
      if (satisfies(cached, minVersion)) {
        if (policy.l1Ms > 0 && !this.l1.set(target.key.local, cached, policy.l1Ms, now)) {
          // This process has seen a newer version (its event came before the cache updater's write): never answer older.
          const newest = this.l1.newest(target.key.local);
          if (newest && newest.version > cached.version && isFresh(newest, now) && satisfies(newest, minVersion)) return this.hit(target, newest, "l1", now);
        }
        if (cached.kind === "entity" && this.shouldRefreshEarly(cached, policy, now)) this.refreshInBackground(target);
        return this.hit(target, cached, "redis", now);
      }
      forced = true; // fresh, but older than the caller's min_version
    }
    const stale = cached?.kind === "entity" && now < cached.staleUntil ? cached : undefined;
    const signal = cancellation === undefined || cancellation instanceof AbortSignal ? cancellation : cancellation.signal;
    return this.miss(target, minVersion, stale, cacheDown, forced, signal);
  }

  /** Results in the order of the distinct ids (duplicates answered once). One MGET, one backend batch for the keys this call leads. */
  async getMany(tenant: string, type: string, ids: readonly string[], signal?: AbortSignal): Promise<{ id: string; result: ReadResult }[]> {
    checkName("tenant", tenant);
    this.catalog.resolve(type);
    const unique = [...new Set(ids)];
    if (unique.length > MAX_BATCH_IDS) throw invalidArgument("BATCH_TOO_LARGE", `at most ${MAX_BATCH_IDS} ids per batch (got ${unique.length})`, { field: "ids" });
    const targets = unique.map((id) => this.target(tenant, type, id));
    const results = new Array<ReadResult | undefined>(targets.length);
    const now = Date.now();
    const policy = targets[0]?.resource.policy;
    if (!policy) return [];

    const pending: number[] = [];
    targets.forEach((target, i) => {
      const local = policy.l1Ms > 0 ? this.l1.get(target.key.local, now) : undefined;
      if (local && isFresh(local, now)) results[i] = this.hit(target, local, "l1", now);
      else pending.push(i);
    });

    let cached: (CacheEntry | undefined)[] = [];
    let cacheDown = false;
    if (pending.length > 0) {
      try {
        cached = await this.cache.getMany(pending.map((i) => targets[i]!.key));
      } catch (error) {
        this.cacheFailed("getMany", error);
        cacheDown = true;
      }
    }
    const misses: { index: number; stale: CacheEntry | undefined }[] = [];
    pending.forEach((index, j) => {
      const entry = cached[j];
      const target = targets[index]!;
      if (entry && isFresh(entry, now)) {
        this.l1.set(target.key.local, entry, policy.l1Ms, now);
        if (entry.kind === "entity" && this.shouldRefreshEarly(entry, policy, now)) this.refreshInBackground(target);
        results[index] = this.hit(target, entry, "redis", now);
      } else {
        misses.push({ index, stale: entry?.kind === "entity" && now < entry.staleUntil ? entry : undefined });
      }
    });

    if (misses.length > 0) {
      const toLead: number[] = [];
      const flights = new Map<number, { promise: Promise<Outcome>; joined: boolean }>();
      for (const { index } of misses) {
        const joined = this.flights.get(targets[index]!.key.local);
        if (joined) flights.set(index, { promise: joined, joined: true });
        else toLead.push(index);
      }
      if (toLead.length > 0) {
        const opened = toLead.map((index) => this.flights.open(targets[index]!.key.local));
        toLead.forEach((index, j) => flights.set(index, { promise: opened[j]!.promise, joined: false }));
        this.leadBatch(toLead.map((index) => targets[index]!), opened, cacheDown);
      }
      const labels = this.metrics.labelsOf(tenant, type);
      this.metrics.waiting.inc(labels, misses.length);
      const settled = await Promise.allSettled(misses.map(({ index }) => abortable(flights.get(index)!.promise, signal)));
      this.metrics.waiting.dec(labels, misses.length);
      let failure: unknown;
      settled.forEach((outcome, j) => {
        const { index, stale } = misses[j]!;
        const target = targets[index]!;
        if (outcome.status === "fulfilled") {
          results[index] = this.answered(target, outcome.value, flights.get(index)!.joined, false);
        } else if (stale && isBackendFailure(outcome.reason)) {
          results[index] = this.serveStale(target, stale, outcome.reason);
        } else {
          failure ??= outcome.reason;
        }
      });
      if (failure) throw failure;
    }
    return targets.map((target, i) => ({ id: target.id, result: results[i]! }));
  }

  /** Lists straight from the backend (lists are not cached). */
  async list(tenant: string, type: string, after: string | undefined, limit: number, signal?: AbortSignal): Promise<Entity[]> {
    checkName("tenant", tenant);
    const resource = this.catalog.resolve(type);
    const { backend } = resource;
    if (!backend.list) {
      throw new RpcError(Code.UNIMPLEMENTED, "LIST_NOT_SUPPORTED", `resource type ${JSON.stringify(type)} is served by a ${backend.kind} backend, which cannot list`, { type });
    }
    const timer = this.metrics.backendLatency.startTimer({ ...this.metrics.labelsOf(tenant, type), backend: backend.kind, op: "list" });
    try {
      const entities = await withTimeout(backend.list(tenant, type, after, limit, signal ?? new AbortController().signal), loadTimeoutOf(resource.policy), `${backend.kind} list`);
      timer({ outcome: "found" });
      return entities;
    } catch (error) {
      timer({ outcome: "error" });
      throw this.backendError(error, `list ${tenant}/${type}`);
    }
  }

  /**
   * A domain event's entity (`deleted`: the delete's version): the L1 takes its new state (types
   * that write through) or only its version (deletes, types that invalidate), unless it already has
   * that version or a newer one. False when nothing changed (older event, or the type has no L1).
   */
  applyEvent(entity: Entity, deleted: boolean): boolean {
    const resource = this.catalog.find(entity.type);
    if (!resource || resource.policy.l1Ms <= 0) return false;
    const { policy } = resource;
    const now = Date.now();
    const entry =
      deleted || policy.onEvent !== "write-through" ? undefined : entityEntry(entity, { now, ttlMs: jitter(policy.ttlMs, this.random), graceMs: policy.staleGraceMs, loadMs: 0 });
    return this.l1.applyEvent(this.keyOf(entity.tenant, entity.type, entity.id).local, entity.version, entry, policy.l1Ms, now);
  }

  /** The L1's size (slots, versions of deleted entities included), bounded by l1MaxEntries. */
  get l1Size(): number {
    return this.l1.size;
  }

  /** Drops this process's L1 copy of a key (e.g. on an event for another instance's write). */
  evictLocal(tenant: string, type: string, id: string): void {
    this.l1.delete(this.keyOf(tenant, type, id).local);
  }

  /** Waits for background refreshes; the cache and backends belong to the caller. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.background]);
    this.l1.clear();
  }

  // ---------------------------------------------------------------- read path

  private target(tenant: string, type: string, id: string): Target {
    checkName("tenant", tenant);
    const resource = this.catalog.resolve(type);
    checkName("id", id);
    return { key: this.keyOf(tenant, type, id), resource, tenant, type, id, labels: this.metrics.labelsOf(tenant, type) };
  }

  private hit(target: Target, entry: CacheEntry, layer: "l1" | "redis", now: number): ReadResult {
    const ttlMs = entry.freshUntil - now;
    if (entry.kind === "negative") {
      this.metrics.negativeHits.inc(target.labels);
      return { entity: undefined, status: { kind: "negative-hit", ttlMs } };
    }
    this.metrics.hits.inc({ ...target.labels, layer });
    return { entity: entry.entity, status: { kind: "hit", ttlMs, layer } };
  }

  private async miss(target: Target, minVersion: bigint, stale: CacheEntry | undefined, cacheDown: boolean, forced: boolean, signal?: AbortSignal): Promise<ReadResult> {
    const attempts = minVersion > 0n ? Math.max(1, this.options.rywAttempts ?? 3) : 1;
    let seen: CacheEntry | undefined;
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (attempt > 0) await sleep((this.options.rywBackoffMs ?? 25) * 2 ** (attempt - 1), signal);
      let outcome: Outcome;
      let joined: boolean;
      this.metrics.waiting.inc(target.labels);
      try {
        const flight = this.flights.run(target.key.local, () => this.lead(target, minVersion, cacheDown));
        joined = !flight.leader;
        outcome = await abortable(flight.promise, signal);
      } catch (error) {
        if (stale && stale.version >= minVersion && isBackendFailure(error) && Date.now() < stale.staleUntil) return this.serveStale(target, stale, error);
        throw error;
      } finally {
        this.metrics.waiting.dec(target.labels);
      }
      if (satisfies(outcome.entry, minVersion)) return this.answered(target, outcome, joined, forced);
      seen = outcome.entry;
    }
    throw unavailable("REPLICA_LAGGING", `the replica has not caught up with version ${minVersion} of ${target.type}/${target.id} yet; retry`, {
      minVersion: String(minVersion),
      replicaVersion: String(seen?.kind === "entity" ? seen.version : 0n),
    });
  }

  private answered(target: Target, outcome: Outcome, joined: boolean, forced: boolean): ReadResult {
    const entity = outcome.entry.kind === "entity" ? outcome.entry.entity : undefined;
    if (joined || outcome.source === "peer") {
      this.metrics.collapsed.inc(target.labels);
      return { entity, status: { kind: "collapsed" } };
    }
    this.metrics.misses.inc(target.labels);
    return { entity, status: { kind: "miss", fwd: forced ? "request" : "miss", stored: outcome.stored, detail: outcome.detail } };
  }

  private serveStale(target: Target, stale: CacheEntry, error: unknown): ReadResult {
    const reason = error instanceof RpcError && error.reason === "BACKEND_TIMEOUT" ? "backend-timeout" : error instanceof RpcError && error.code === Code.UNAVAILABLE ? "backend-unavailable" : "backend-error";
    this.metrics.staleServed.inc({ ...target.labels, reason });
    this.log.warn({ tenant: target.tenant, type: target.type, id: target.id, version: String(stale.version), reason, err: (error as Error).message }, "backend failed; serving a stale entry");
    return { entity: stale.entity, status: { kind: "stale", detail: reason } };
  }

  /**
   * The one load of a key in this process. Takes the cross-instance lease and loads, or waits for
   * the instance that holds it (fill announcement, or the lease's expiry, then competes again).
   */
  private async lead(target: Target, minVersion: bigint, cacheDown: boolean): Promise<Outcome> {
    if (cacheDown) return this.loadUncached(target, "cache-unavailable");
    const { leaseMs } = target.resource.policy;
    const budgetMs = leaseMs * (this.options.maxLeaseRounds ?? 3);
    const deadline = Date.now() + budgetMs;
    const token = randomUUID();
    for (;;) {
      let won: boolean;
      try {
        won = await this.cache.acquireLease(target.key, token, leaseMs);
      } catch (error) {
        this.cacheFailed("lease", error);
        return this.loadUncached(target, "cache-unavailable");
      }
      if (won) return this.loadAndComplete(target, token, minVersion);
      const outcome = await this.awaitPeer(target, token, minVersion);
      if (outcome) return outcome;
      if (Date.now() >= deadline) {
        throw unavailable("LOAD_TIMEOUT", `no load of ${target.type}/${target.id} finished within ${budgetMs} ms`);
      }
    }
  }

  /**
   * Another instance holds the lease. Subscribe, then look again (its fill may have landed before
   * the subscription), then wait for its announcement up to the lease time. Undefined: compete again.
   */
  private async awaitPeer(target: Target, token: string, minVersion: bigint): Promise<Outcome | undefined> {
    const { leaseMs } = target.resource.policy;
    const watch = this.cache.watch(target.key);
    try {
      try {
        await watch.ready;
        const landed = await this.cache.get(target.key);
        if (landed && isFresh(landed, Date.now()) && satisfies(landed, minVersion)) return { entry: landed, source: "peer", stored: true };
        // The loader may have finished without storing (and released the lease): compete now.
        if (await this.cache.acquireLease(target.key, token, leaseMs)) return this.loadAndComplete(target, token, minVersion);
      } catch (error) {
        this.cacheFailed("watch", error);
        return this.loadUncached(target, "cache-unavailable");
      }
      const message = await watch.next(leaseMs);
      if (!message) return undefined; // the lease expired: its holder died or stalled
      if (message.kind === "error") throw message.error;
      if (!satisfies(message.entry, minVersion)) return undefined;
      return { entry: message.entry, source: "peer", stored: message.stored };
    } finally {
      watch.close();
    }
  }

  /** Loads with the lease held, stores with the versioned set, releases the lease and announces. */
  private async loadAndComplete(target: Target, token: string, minVersion: bigint): Promise<Outcome> {
    let entry: CacheEntry;
    try {
      entry = await this.load(target);
    } catch (error) {
      const failure = error as RpcError;
      await this.cache.complete(target.key, token, { kind: "error", error: failure }).catch((cacheError: unknown) => this.cacheFailed("complete", cacheError));
      throw failure;
    }
    return this.complete(target, token, entry, minVersion);
  }

  private async complete(target: Target, token: string, entry: CacheEntry, minVersion: bigint): Promise<Outcome> {
    const { policy } = target.resource;
    const cacheable = entry.kind === "entity" || policy.negativeTtlMs > 0;
    // A replica answer older than the caller's min_version is not the current state: never stored.
    const storable = cacheable && satisfies(entry, minVersion);
    const fill: Fill = storable ? { kind: "store", entry, ttlMs: entry.staleUntil - entry.loadedAt } : { kind: "pass", entry };
    let result: SetResult | undefined;
    try {
      result = await this.cache.complete(target.key, token, fill);
    } catch (error) {
      this.cacheFailed("complete", error);
      return { entry, source: "load", stored: false, detail: "cache-unavailable" };
    }
    if (!storable) return { entry, source: "load", stored: false, detail: cacheable ? "below-min-version" : undefined };
    if (result && !result.stored) {
      // A newer version or an invalidation got there first (stale-set fencing).
      this.metrics.fenced.inc(target.labels);
      const newer = await this.cache.get(target.key).catch(() => undefined);
      if (newer?.kind === "entity" && newer.version > entry.version && isFresh(newer, Date.now())) return { entry: newer, source: "load", stored: false, detail: "fenced" };
      return { entry, source: "load", stored: false, detail: "fenced" };
    }
    this.l1.set(target.key.local, entry, policy.l1Ms, Date.now());
    return { entry, source: "load", stored: true };
  }

  /** The cache is unreachable: load and answer without storing (degraded, still single-flight in process). */
  private async loadUncached(target: Target, detail: string): Promise<Outcome> {
    return { entry: await this.load(target), source: "load", stored: false, detail };
  }

  /** One backend get, bounded by the lease time, measured; the entry is built with jittered TTLs. */
  private async load(target: Target): Promise<CacheEntry> {
    const { backend, policy } = target.resource;
    const timeoutMs = loadTimeoutOf(policy);
    const started = performance.now();
    const timer = this.metrics.backendLatency.startTimer({ ...target.labels, backend: backend.kind, op: "get" });
    let entity: Entity | undefined;
    try {
      entity = await withTimeout(backend.get(target.tenant, target.type, target.id, AbortSignal.timeout(timeoutMs)), timeoutMs, `${backend.kind} get`);
    } catch (error) {
      timer({ outcome: "error" });
      throw this.backendError(error, `load ${target.tenant}/${target.type}/${target.id}`);
    }
    timer({ outcome: entity ? "found" : "not_found" });
    return this.entryOf(entity, policy, performance.now() - started);
  }

  private entryOf(entity: Entity | undefined, policy: CachePolicy, loadMs: number): CacheEntry {
    const now = Date.now();
    if (!entity) return negativeEntry({ now, ttlMs: jitter(policy.negativeTtlMs, this.random), loadMs });
    return entityEntry(entity, { now, ttlMs: jitter(policy.ttlMs, this.random), graceMs: policy.staleGraceMs, loadMs });
  }

  /** Multi-key load: leases in one pipelined round, one backend batchGet for the keys won, waits for the rest. */
  private leadBatch(targets: Target[], flights: { resolve(outcome: Outcome): void; reject(error: unknown): void }[], cacheDown: boolean): void {
    const run = async () => {
      const token = randomUUID();
      let won: boolean[];
      if (cacheDown) {
        won = targets.map(() => false);
      } else {
        try {
          won = await Promise.all(targets.map((target) => this.cache.acquireLease(target.key, token, target.resource.policy.leaseMs)));
        } catch (error) {
          this.cacheFailed("lease", error);
          cacheDown = true;
          won = targets.map(() => false);
        }
      }
      const loading = cacheDown ? targets.map((_, i) => i) : targets.flatMap((_, i) => (won[i] ? [i] : []));
      const waiting = cacheDown ? [] : targets.flatMap((_, i) => (won[i] ? [] : [i]));
      for (const i of waiting) this.lead(targets[i]!, 0n, false).then(flights[i]!.resolve, flights[i]!.reject);
      if (loading.length === 0) return;
      let entries: CacheEntry[];
      try {
        entries = await this.loadBatch(loading.map((i) => targets[i]!));
      } catch (error) {
        const failure = error as RpcError;
        for (const i of loading) {
          if (!cacheDown) this.cache.complete(targets[i]!.key, token, { kind: "error", error: failure }).catch((cacheError: unknown) => this.cacheFailed("complete", cacheError));
          flights[i]!.reject(failure);
        }
        return;
      }
      loading.forEach((i, j) => {
        const entry = entries[j]!;
        const done = cacheDown ? Promise.resolve<Outcome>({ entry, source: "load", stored: false, detail: "cache-unavailable" }) : this.complete(targets[i]!, token, entry, 0n);
        done.then(flights[i]!.resolve, flights[i]!.reject);
      });
    };
    run().catch((error: unknown) => flights.forEach((flight) => flight.reject(error)));
  }

  private async loadBatch(targets: Target[]): Promise<CacheEntry[]> {
    const { backend, policy } = targets[0]!.resource;
    const { tenant, type } = targets[0]!;
    const timeoutMs = loadTimeoutOf(policy);
    const started = performance.now();
    const timer = this.metrics.backendLatency.startTimer({ ...this.metrics.labelsOf(tenant, type), backend: backend.kind, op: "batchGet" });
    let found: Map<string, Entity>;
    try {
      const ids = targets.map((target) => target.id);
      found = await withTimeout(backend.batchGet(tenant, type, ids, AbortSignal.timeout(timeoutMs)), timeoutMs, `${backend.kind} batchGet`);
    } catch (error) {
      timer({ outcome: "error" });
      throw this.backendError(error, `batch load ${tenant}/${type} (${targets.length} ids)`);
    }
    timer({ outcome: "found" });
    const loadMs = performance.now() - started;
    return targets.map((target) => this.entryOf(found.get(target.id), policy, loadMs));
  }

  // ------------------------------------------------------------- early refresh

  /** XFetch: refresh when now - delta * beta * ln(rand) >= expiry, delta = the measured load time. */
  private shouldRefreshEarly(entry: CacheEntry, policy: CachePolicy, now: number): boolean {
    if (policy.earlyRefreshBeta <= 0) return false;
    return now - entry.loadMs * policy.earlyRefreshBeta * Math.log(Math.max(this.random(), Number.MIN_VALUE)) >= entry.freshUntil;
  }

  /** At most one refresh per key in this process, none when another instance already loads it; the caller is not blocked. */
  private refreshInBackground(target: Target): void {
    const local = target.key.local;
    if (this.refreshing.has(local) || this.flights.has(local)) return;
    this.refreshing.add(local);
    this.metrics.earlyRefreshes.inc(target.labels);
    const task = (async () => {
      const token = randomUUID();
      if (!(await this.cache.acquireLease(target.key, token, target.resource.policy.leaseMs))) return;
      await this.loadAndComplete(target, token, 0n);
    })()
      .catch((error: unknown) => this.log.debug({ err: (error as Error).message, key: local }, "early refresh failed"))
      .finally(() => {
        this.refreshing.delete(local);
        this.background.delete(task);
      });
    this.background.add(task);
  }

  // ------------------------------------------------------------------ failures

  private backendError(error: unknown, what: string): RpcError {
    if (error instanceof RpcError) {
      if (error.code === Code.INTERNAL) this.log.error({ err: error.cause ?? error }, `${what} failed`);
      return error;
    }
    this.log.error({ err: error }, `${what} failed`);
    return new RpcError(Code.INTERNAL, "BACKEND_ERROR", `${what} failed`);
  }

  private cacheFailed(op: string, error: unknown): void {
    this.metrics.cacheErrors.inc({ op });
    const now = Date.now();
    if (now - this.lastCacheWarning < 5_000) return;
    this.lastCacheWarning = now;
    this.log.warn({ op, err: (error as Error)?.message }, "cache unavailable; reads are served from the backends (degraded)");
  }
}

function isFresh(entry: CacheEntry, now: number): boolean {
  return entry.kind !== "tombstone" && now < entry.freshUntil;
}

/** A negative entry answers only reads without min_version; an entity one at or above it. */
function satisfies(entry: CacheEntry, minVersion: bigint): boolean {
  if (entry.kind === "tombstone") return false;
  return entry.kind === "entity" ? entry.version >= minVersion : minVersion === 0n;
}

/** A load may not outlive its lease (or another instance would load too). */
function loadTimeoutOf(policy: CachePolicy): number {
  return policy.leaseMs;
}

function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(cancelled());
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(cancelled());
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

function cancelled(): RpcError {
  return new RpcError(Code.CANCELLED, "CANCELLED", "the call was cancelled");
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(cancelled());
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(cancelled());
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
