import type { CacheEntry } from "../../runtime/cache/entry.js";

/**
 * The optional in-process layer in front of Redis: entries live for min(l1Ms, freshness), at most
 * `maxEntries` (oldest inserted evicted first). A write through this instance's EntityReader.writer
 * drops its copy of the key; any other copy is at most l1Ms old.
 */
export class L1Cache {
  private readonly entries = new Map<string, { entry: CacheEntry; until: number }>();

  constructor(private readonly maxEntries = 10_000) {}

  get(key: string, now: number): CacheEntry | undefined {
    const slot = this.entries.get(key);
    if (!slot) return undefined;
    if (slot.until <= now) {
      this.entries.delete(key);
      return undefined;
    }
    return slot.entry;
  }

  set(key: string, entry: CacheEntry, l1Ms: number, now: number): void {
    if (l1Ms <= 0 || entry.kind === "tombstone") return;
    const until = Math.min(now + l1Ms, entry.freshUntil);
    if (until <= now) return;
    const current = this.entries.get(key);
    if (current && current.entry.version > entry.version) return;
    this.entries.delete(key);
    this.entries.set(key, { entry, until });
    if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  clear(): void {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }
}
