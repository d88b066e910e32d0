import type { CacheEntry } from "../../runtime/cache/entry.js";

interface Slot {
  /** What a read may answer until `until` (undefined: only the version is known, e.g. after a delete). */
  entry: CacheEntry | undefined;
  /** The newest version this process has seen for the key: nothing older is taken any more. */
  version: bigint;
  until: number;
}

/**
 * The in-process layer in front of Redis, versioned like the Redis entries and kept coherent by
 * the domain-event stream (`applyEvent`, fed by services/query/l1-events.ts):
 *
 * - a read hits for min(l1Ms, the entry's freshness) after it was stored or announced;
 * - every slot remembers the newest version seen, so neither a read that fetched an older copy
 *   (a slow Redis answer, a lagging replica) nor an older or redelivered event can replace a
 *   newer entry, and a delete leaves "nothing below v";
 * - at most `maxEntries` slots (oldest touched evicted first), versions included.
 *
 * Staleness: with events flowing, an entry is replaced when the event reaches this process (the
 * consumer's lag); without them (a stalled consumer), it is at most l1Ms old.
 */
export class L1Cache {
  private readonly slots = new Map<string, Slot>();

  constructor(private readonly maxEntries = 10_000) {}

  get(key: string, now: number): CacheEntry | undefined {
    const slot = this.slots.get(key);
    if (!slot?.entry || slot.until <= now) return undefined;
    return slot.entry;
  }

  /** The newest entity held for the key, served or not any more (to never answer older than it). */
  newest(key: string): CacheEntry | undefined {
    return this.slots.get(key)?.entry;
  }

  /** A copy a read fetched (Redis, a load); false when it is older than what this process has seen. */
  set(key: string, entry: CacheEntry, l1Ms: number, now: number): boolean {
    if (l1Ms <= 0 || entry.kind === "tombstone") return false;
    const slot = this.slots.get(key);
    if (slot && entry.version < slot.version) return false;
    if (slot && slot.entry && entry.version === slot.version && slot.until > now) return true;
    const until = Math.min(now + l1Ms, entry.freshUntil);
    if (until <= now) return false;
    this.put(key, { entry, version: entry.version, until });
    return true;
  }

  /**
   * A domain event for the key at `version`: its new state (`entry`, write-through) or none (a
   * delete, or a type that only invalidates). False when this process already has that version or newer.
   */
  applyEvent(key: string, version: bigint, entry: CacheEntry | undefined, l1Ms: number, now: number): boolean {
    const slot = this.slots.get(key);
    if (slot && version <= slot.version) return false;
    this.put(key, { entry: entry && l1Ms > 0 ? entry : undefined, version, until: entry ? Math.min(now + l1Ms, entry.freshUntil) : 0 });
    return true;
  }

  delete(key: string): void {
    this.slots.delete(key);
  }

  clear(): void {
    this.slots.clear();
  }

  get size(): number {
    return this.slots.size;
  }

  private put(key: string, slot: Slot): void {
    this.slots.delete(key);
    this.slots.set(key, slot);
    if (this.slots.size > this.maxEntries) this.slots.delete(this.slots.keys().next().value!);
  }
}
