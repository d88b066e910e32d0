// When does a written version become visible in the cache? Redis keyspace notifications: Redis
// publishes `__keyspace@<db>__:<key>` → "set" the moment any command (the cache updater's Lua
// versioned set included) writes the key, so the bench learns of every write without polling. On a
// notification for a key it waits for, it reads the key once and checks the entry's version; the
// arrival of the notification is the visibility time. A slow sweep (MGET of keys waited for longer
// than a second) catches anything a notification could have missed; those are counted apart.
// Each entry carries `loadedAt`, the cache updater's clock right before its write: the server-side
// visibility time, which does not depend on how promptly this process gets to run.
import { Redis } from "ioredis";
import { encodedVersion } from "../../runtime/cache/entry.js";

interface Waiter {
  readonly version: bigint;
  readonly since: number;
  resolve(seen: Visibility): void;
}

export interface Visibility {
  /** performance.now() when this process learned of it. */
  readonly at: number;
  /** ms since the epoch: the cache updater's clock when it wrote the entry (its `loadedAt`). */
  readonly writtenAt: number;
  /** The version found (the one waited for, or a later one). */
  readonly version: bigint;
  readonly how: "notified" | "swept";
}

const FLAGS_NEEDED = "K$";

export class VisibilityWatch {
  private readonly waiters = new Map<string, Waiter[]>();
  private readonly subscriber: Redis;
  private readonly reader: Redis;
  private sweeper: NodeJS.Timeout | undefined;
  private previousFlags: string | undefined;
  notified = 0;
  swept = 0;

  private constructor(url: string) {
    this.subscriber = new Redis(url, { lazyConnect: true, enableAutoPipelining: false });
    this.reader = new Redis(url, { lazyConnect: true, enableAutoPipelining: true });
  }

  /**
   * Turns on keyspace events for string commands (restored by close()) and subscribes to the keys
   * under `keyPrefix`. Fails when the server refuses CONFIG SET (then nothing is measured).
   */
  static async start(url: string, keyPrefix: string): Promise<VisibilityWatch> {
    const watch = new VisibilityWatch(url);
    await Promise.all([watch.subscriber.connect(), watch.reader.connect()]);
    const [, flags] = (await watch.reader.config("GET", "notify-keyspace-events")) as [string, string];
    watch.previousFlags = flags;
    const wanted = new Set([...flags, ...FLAGS_NEEDED]);
    // "A" already includes "$" (every class of command).
    if (!(flags.includes("K") && (flags.includes("$") || flags.includes("A")))) await watch.reader.config("SET", "notify-keyspace-events", [...wanted].join(""));
    const db = Number(new URL(url).pathname.slice(1) || 0);
    const pattern = `__keyspace@${db}__:${keyPrefix}*`;
    const channelPrefix = `__keyspace@${db}__:`.length;
    watch.subscriber.on("pmessage", (_pattern: string, channel: string, event: string) => {
      if (event !== "set") return;
      const at = performance.now();
      const key = channel.slice(channelPrefix);
      if (watch.waiters.has(key)) void watch.check(key, at, "notified");
    });
    await watch.subscriber.psubscribe(pattern);
    watch.sweeper = setInterval(() => void watch.sweep(), 250);
    return watch;
  }

  /** Resolves when `key` holds `version` or higher. Register before the write can happen. */
  expect(key: string, version: bigint): Promise<Visibility> {
    return new Promise((resolve) => {
      const list = this.waiters.get(key) ?? [];
      list.push({ version, since: performance.now(), resolve });
      this.waiters.set(key, list);
    });
  }

  get pending(): number {
    let count = 0;
    for (const list of this.waiters.values()) count += list.length;
    return count;
  }

  private async check(key: string, at: number, how: "notified" | "swept"): Promise<void> {
    const raw = await this.reader.getBuffer(key).catch(() => null);
    if (raw) this.settle(key, raw, at, how);
  }

  private settle(key: string, raw: Buffer, at: number, how: "notified" | "swept"): void {
    const list = this.waiters.get(key);
    if (!list || raw.length < 31) return;
    const version = BigInt(encodedVersion(raw));
    const writtenAt = raw.readDoubleBE(23);
    const left = list.filter((waiter) => {
      if (waiter.version > version) return true;
      if (how === "notified") this.notified++;
      else this.swept++;
      waiter.resolve({ at, writtenAt, version, how });
      return false;
    });
    if (left.length) this.waiters.set(key, left);
    else this.waiters.delete(key);
  }

  private async sweep(): Promise<void> {
    const cutoff = performance.now() - 1_000;
    const keys = [...this.waiters].filter(([, list]) => list.some((waiter) => waiter.since < cutoff)).map(([key]) => key);
    if (keys.length === 0) return;
    const raws = await this.reader.mgetBuffer(...keys).catch(() => [] as (Buffer | null)[]);
    const at = performance.now();
    raws.forEach((raw, i) => raw && this.settle(keys[i]!, raw, at, "swept"));
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    if (this.previousFlags !== undefined) await this.reader.config("SET", "notify-keyspace-events", this.previousFlags).catch(() => undefined);
    this.subscriber.disconnect();
    this.reader.disconnect();
  }
}
