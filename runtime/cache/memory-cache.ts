import type { Cache, Fill, FillMessage, FillWatch, SetResult } from "./cache.js";
import { decodeEntry, encodeEntry, type CacheEntry } from "./entry.js";
import type { CacheKey } from "./keys.js";
import { nextMessage } from "./fill-queue.js";

interface Stored {
  readonly bytes: Buffer;
  readonly version: bigint;
  readonly kind: CacheEntry["kind"];
  readonly expiresAt: number;
}

/**
 * The Cache port in process memory, with the Redis adapter's semantics (versioned sets,
 * tombstones, leases with expiry, fill announcements). Entries are kept encoded, so a reader gets
 * a copy, as it would from Redis. Readers that share one MemoryCache behave like instances that
 * share one Redis: the embedded demo and unit tests use it.
 */
export class MemoryCache implements Cache {
  private readonly entries = new Map<string, Stored>();
  private readonly leases = new Map<string, { token: string; expiresAt: number }>();
  private readonly channels = new Map<string, Set<(message: FillMessage) => void>>();
  private sweeps = 0;

  constructor(private readonly now: () => number = Date.now) {}

  async get(key: CacheKey): Promise<CacheEntry | undefined> {
    const stored = this.live(key.entry);
    return stored && decodeEntry(stored.bytes);
  }

  async getMany(keys: readonly CacheKey[]): Promise<(CacheEntry | undefined)[]> {
    return Promise.all(keys.map((key) => this.get(key)));
  }

  async set(key: CacheKey, entry: CacheEntry, ttlMs: number): Promise<SetResult> {
    return this.versionedSet(key.entry, entry, ttlMs);
  }

  async invalidate(key: CacheKey, tombstone: CacheEntry, ttlMs: number): Promise<boolean> {
    const current = this.live(key.entry);
    if (current && (tombstone.version < current.version || (tombstone.version === current.version && current.kind !== "negative"))) return false;
    this.put(key.entry, tombstone, ttlMs);
    return true;
  }

  async acquireLease(key: CacheKey, token: string, ttlMs: number): Promise<boolean> {
    const lease = this.leases.get(key.lease);
    if (lease && lease.expiresAt > this.now()) return false;
    this.leases.set(key.lease, { token, expiresAt: this.now() + ttlMs });
    return true;
  }

  async complete(key: CacheKey, token: string, fill: Fill): Promise<SetResult | undefined> {
    let result: SetResult | undefined;
    let message: FillMessage;
    if (fill.kind === "store") {
      result = this.versionedSet(key.entry, fill.entry, fill.ttlMs);
      message = { kind: "entry", entry: fill.entry, stored: result.stored };
    } else if (fill.kind === "pass") {
      message = { kind: "entry", entry: fill.entry, stored: false };
    } else {
      message = { kind: "error", error: fill.error };
    }
    if (this.leases.get(key.lease)?.token === token) this.leases.delete(key.lease);
    const listeners = this.channels.get(key.channel);
    if (listeners) {
      // Like Redis pub/sub: delivered later, each subscriber gets its own copy of the entry.
      const copy: FillMessage = message.kind === "entry" ? { ...message, entry: decodeEntry(encodeEntry(message.entry)) } : message;
      queueMicrotask(() => listeners.forEach((listener) => listener(copy)));
    }
    return result;
  }

  watch(key: CacheKey): FillWatch {
    let listeners = this.channels.get(key.channel);
    if (!listeners) this.channels.set(key.channel, (listeners = new Set()));
    const own = listeners;
    const queue: FillMessage[] = [];
    let wake: (() => void) | undefined;
    const listener = (message: FillMessage) => {
      queue.push(message);
      wake?.();
    };
    own.add(listener);
    return {
      ready: Promise.resolve(),
      next: (timeoutMs, signal) => nextMessage(queue, (fn) => (wake = fn), timeoutMs, signal),
      close: () => {
        own.delete(listener);
        if (own.size === 0 && this.channels.get(key.channel) === own) this.channels.delete(key.channel);
      },
    };
  }

  async close(): Promise<void> {
    this.entries.clear();
    this.leases.clear();
    this.channels.clear();
  }

  /** Remaining lifetime of a stored key in ms (like PTTL), or undefined. For tests. */
  ttlOf(key: CacheKey): number | undefined {
    const stored = this.live(key.entry);
    return stored && stored.expiresAt - this.now();
  }

  private versionedSet(name: string, entry: CacheEntry, ttlMs: number): SetResult {
    const current = this.live(name);
    if (current && entry.version < current.version) return { stored: false, current: current.version };
    this.put(name, entry, ttlMs);
    return { stored: true };
  }

  private put(name: string, entry: CacheEntry, ttlMs: number): void {
    this.entries.set(name, { bytes: encodeEntry(entry), version: entry.version, kind: entry.kind, expiresAt: this.now() + Math.max(1, ttlMs) });
    if (++this.sweeps % 1024 === 0) this.sweep();
  }

  private live(name: string): Stored | undefined {
    const stored = this.entries.get(name);
    if (stored && stored.expiresAt <= this.now()) {
      this.entries.delete(name);
      return undefined;
    }
    return stored;
  }

  private sweep(): void {
    const now = this.now();
    for (const [name, stored] of this.entries) if (stored.expiresAt <= now) this.entries.delete(name);
    for (const [name, lease] of this.leases) if (lease.expiresAt <= now) this.leases.delete(name);
  }
}
