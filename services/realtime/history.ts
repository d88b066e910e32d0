import type { HubEvent } from "./events.js";

/**
 * The recent events of one partition, in offset order, bounded by count. Together with the
 * offset of the newest event it had to drop, it answers "can a stream resume after offset X?".
 */
export class PartitionHistory {
  private readonly ring: (HubEvent | undefined)[];
  private start = 0;
  private size = 0;
  /** Offset of the newest event dropped from the ring; undefined while nothing was dropped. */
  private droppedThrough: number | undefined;

  constructor(readonly capacity: number) {
    this.ring = new Array<HubEvent | undefined>(Math.max(0, capacity));
  }

  get length(): number {
    return this.size;
  }

  push(event: HubEvent): void {
    if (this.capacity <= 0) {
      this.droppedThrough = event.offset;
      return;
    }
    if (this.size === this.capacity) {
      this.droppedThrough = this.ring[this.start]!.offset;
      this.ring[this.start] = event;
      this.start = (this.start + 1) % this.capacity;
    } else {
      this.ring[(this.start + this.size) % this.capacity] = event;
      this.size++;
    }
  }

  /**
   * Whether every event after `after` is still here. `after` undefined means "since this hub
   * started": covered only while nothing was dropped.
   */
  covers(after: number | undefined): boolean {
    if (this.droppedThrough === undefined) return true;
    return after !== undefined && after >= this.droppedThrough;
  }

  /** The kept events with an offset above `after` (all of them when undefined), oldest first. */
  *since(after: number | undefined): Generator<HubEvent> {
    for (let i = 0; i < this.size; i++) {
      const event = this.ring[(this.start + i) % this.capacity]!;
      if (after === undefined || event.offset > after) yield event;
    }
  }
}

/** A bounded set of recently seen message ids: drops a relay's re-send of a message already handled. */
export class RecentIds {
  private readonly seen = new Set<string>();
  private readonly order: string[];
  private next = 0;

  constructor(private readonly capacity: number) {
    this.order = new Array<string>(Math.max(0, capacity));
  }

  /** True the first time an id is seen (within the window), false for a repeat. */
  add(id: string): boolean {
    if (this.capacity <= 0) return true;
    if (this.seen.has(id)) return false;
    const evicted = this.order[this.next];
    if (evicted !== undefined) this.seen.delete(evicted);
    this.order[this.next] = id;
    this.next = (this.next + 1) % this.capacity;
    this.seen.add(id);
    return true;
  }
}
