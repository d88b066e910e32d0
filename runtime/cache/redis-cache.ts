import { Redis } from "ioredis";
import type { Logger } from "../logger.js";
import { redactUrl } from "../redact.js";
import type { Cache, Fill, FillMessage, FillWatch, SetResult } from "./cache.js";
import { decodeEntry, encodeEntry, type CacheEntry } from "./entry.js";
import { decodeFillMessage, encodeFillError } from "./fill-message.js";
import { nextMessage } from "./fill-queue.js";
import { tracedLookup } from "./lookup-tracing.js";
import type { CacheKey } from "./keys.js";

/**
 * Shared Lua: `below(a, b)` compares two 20-digit version fields exactly (as two 10-digit halves,
 * so neither locale collation nor double precision gets in the way); `vset` is the versioned set.
 * Entries start with "U1", kind at byte 3, version at bytes 4..23 (see entry.ts).
 */
const PRELUDE = `
local function below(a, b)
  local ah, bh = tonumber(string.sub(a, 1, 10)), tonumber(string.sub(b, 1, 10))
  if ah ~= bh then return ah < bh end
  return tonumber(string.sub(a, 11, 20)) < tonumber(string.sub(b, 11, 20))
end
local function current(key)
  local cur = redis.call('GET', key)
  if cur and string.sub(cur, 1, 2) == 'U1' then return cur end
  return nil
end
local function vset(key, value, ttl)
  local cur = current(key)
  if cur and below(string.sub(value, 4, 23), string.sub(cur, 4, 23)) then
    return 'R' .. string.sub(cur, 4, 23)
  end
  redis.call('SET', key, value, 'PX', ttl)
  return 'S'
end
`;

/** KEYS[1] entry; ARGV[1] encoded entry, ARGV[2] PX. Returns 'S' or 'R<current version>'. */
const SET_SCRIPT = `${PRELUDE}
return vset(KEYS[1], ARGV[1], ARGV[2])`;

/**
 * KEYS[1] entry, KEYS[2] lease; ARGV[1] lease token, ARGV[2] channel, ARGV[3] 'S' | 'U' | 'F',
 * ARGV[4] encoded entry (S, U) or error JSON (F), ARGV[5] PX. Store (versioned), compare-and-delete
 * the lease, announce. Returns 'S', 'R<current version>' or 'N' (nothing to store).
 */
const COMPLETE_SCRIPT = `${PRELUDE}
local flag = ARGV[3]
local result = 'N'
if flag == 'S' then
  result = vset(KEYS[1], ARGV[4], ARGV[5])
  if result ~= 'S' then flag = 'U' end
end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
redis.call('PUBLISH', ARGV[2], flag .. ARGV[4])
return result`;

/**
 * KEYS[1] entry; ARGV[1] encoded tombstone (version v), ARGV[2] PX. "Nothing below v": an entity
 * or tombstone at v or above stays; anything older (or a negative entry) becomes the tombstone.
 */
const INVALIDATE_SCRIPT = `${PRELUDE}
local cur = current(KEYS[1])
local v = string.sub(ARGV[1], 4, 23)
if cur then
  local cv = string.sub(cur, 4, 23)
  if below(v, cv) then return 0 end
  if cv == v and string.sub(cur, 3, 3) ~= 'N' then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`;

interface ScriptCommands {
  umwSet(key: string, value: Buffer, ttlMs: number): Promise<string>;
  umwComplete(entry: string, lease: string, token: string, channel: string, flag: string, payload: Buffer, ttlMs: number): Promise<string>;
  umwInvalidate(key: string, value: Buffer, ttlMs: number): Promise<number>;
}

export interface RedisCacheOptions {
  readonly url: string;
  readonly log: Logger;
  /** A command that takes longer fails (the reader then degrades to the backend). */
  readonly commandTimeoutMs?: number;
  readonly connectTimeoutMs?: number;
  /** How long connect() waits for the first connection before starting degraded. */
  readonly readyTimeoutMs?: number;
  /** Keys whose last decoded entry is kept with its bytes (see DecodedEntries); 0 disables. Default 4096. */
  readonly decodedEntries?: number;
}

interface ChannelGroup {
  readonly listeners: Set<(message: FillMessage) => void>;
  readonly ready: Promise<void>;
}

/**
 * The Cache port on Redis (ioredis): auto-pipelined commands, the scripts above, one extra
 * connection per process for fill subscriptions. Commands fail fast while Redis is unreachable
 * (no offline queue) so that reads degrade to the backend instead of piling up.
 */
export class RedisCache implements Cache {
  readonly redis: Redis;
  private subscriber: Redis | undefined;
  private subscriberReady: Promise<Redis> | undefined;
  private readonly channels = new Map<string, ChannelGroup>();
  private readonly scripts: ScriptCommands;
  private readonly decoded: DecodedEntries;
  private lastErrorLog = 0;

  private constructor(private readonly options: RedisCacheOptions) {
    this.redis = new Redis(options.url, {
      lazyConnect: true,
      enableAutoPipelining: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: options.commandTimeoutMs ?? 1_000,
      connectTimeout: options.connectTimeoutMs ?? 1_000,
      retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2_000),
    });
    this.redis.on("error", (error) => this.logError("redis", error));
    this.redis.defineCommand("umwSet", { numberOfKeys: 1, lua: SET_SCRIPT });
    this.redis.defineCommand("umwComplete", { numberOfKeys: 2, lua: COMPLETE_SCRIPT });
    this.redis.defineCommand("umwInvalidate", { numberOfKeys: 1, lua: INVALIDATE_SCRIPT });
    this.scripts = this.redis as unknown as ScriptCommands;
    this.decoded = new DecodedEntries(options.decodedEntries ?? 4096);
  }

  /** Connects; if Redis does not answer within readyTimeoutMs, starts anyway (degraded) and keeps retrying. */
  static async connect(options: RedisCacheOptions): Promise<RedisCache> {
    const cache = new RedisCache(options);
    cache.redis.connect().catch(() => undefined);
    const ready = await waitReady(cache.redis, options.readyTimeoutMs ?? 2_000);
    if (!ready) options.log.warn({ url: redactUrl(options.url) }, "redis is not reachable; reads go to the backends until it is");
    return cache;
  }

  /** A hit makes no Redis span, a miss does (runtime/cache/lookup-tracing.ts). */
  async get(key: CacheKey): Promise<CacheEntry | undefined> {
    const raw = await tracedLookup("get", [key.entry], this.redis.options, () => this.redis.getBuffer(key.entry), (found) => found !== null);
    return raw ? this.decode(key.entry, raw) : undefined;
  }

  async getMany(keys: readonly CacheKey[]): Promise<(CacheEntry | undefined)[]> {
    if (keys.length === 0) return [];
    const entries = keys.map((key) => key.entry);
    const raws = await tracedLookup("mget", entries, this.redis.options, () => this.redis.mgetBuffer(...entries), (found) => found.every((raw) => raw !== null));
    return raws.map((raw, i) => (raw ? this.decode(keys[i]!.entry, raw) : undefined));
  }

  async set(key: CacheKey, entry: CacheEntry, ttlMs: number): Promise<SetResult> {
    return setResult(await this.scripts.umwSet(key.entry, encodeEntry(entry), pxOf(ttlMs)));
  }

  async invalidate(key: CacheKey, tombstone: CacheEntry, ttlMs: number): Promise<boolean> {
    return (await this.scripts.umwInvalidate(key.entry, encodeEntry(tombstone), pxOf(ttlMs))) === 1;
  }

  async acquireLease(key: CacheKey, token: string, ttlMs: number): Promise<boolean> {
    return (await this.redis.set(key.lease, token, "PX", pxOf(ttlMs), "NX")) === "OK";
  }

  async complete(key: CacheKey, token: string, fill: Fill): Promise<SetResult | undefined> {
    const [flag, payload, ttlMs] =
      fill.kind === "store"
        ? ["S", encodeEntry(fill.entry), fill.ttlMs]
        : fill.kind === "pass"
          ? ["U", encodeEntry(fill.entry), 1]
          : ["F", encodeFillError(fill.error), 1];
    const result = await this.scripts.umwComplete(key.entry, key.lease, token, key.channel, flag, payload, pxOf(ttlMs));
    return fill.kind === "store" ? setResult(result) : undefined;
  }

  watch(key: CacheKey): FillWatch {
    const channel = key.channel;
    let group = this.channels.get(channel);
    if (!group) {
      group = { listeners: new Set(), ready: this.subscribe(channel) };
      group.ready.catch(() => undefined);
      this.channels.set(channel, group);
    }
    const owner = group;
    const queue: FillMessage[] = [];
    let wake: (() => void) | undefined;
    const listener = (message: FillMessage) => {
      queue.push(message);
      wake?.();
    };
    owner.listeners.add(listener);
    let closed = false;
    return {
      ready: owner.ready,
      next: (timeoutMs, signal) => nextMessage(queue, (fn) => (wake = fn), timeoutMs, signal),
      close: () => {
        if (closed) return;
        closed = true;
        owner.listeners.delete(listener);
        if (owner.listeners.size === 0 && this.channels.get(channel) === owner) {
          this.channels.delete(channel);
          this.subscriber?.unsubscribe(channel).catch(() => undefined);
        }
      },
    };
  }

  async close(): Promise<void> {
    await Promise.all([this.redis, this.subscriber].map((client) => client && quit(client)));
  }

  private async subscribe(channel: string): Promise<void> {
    const subscriber = await this.ensureSubscriber();
    await subscriber.subscribe(channel);
  }

  private ensureSubscriber(): Promise<Redis> {
    this.subscriberReady ??= (async () => {
      const subscriber = this.redis.duplicate({ lazyConnect: true, enableAutoPipelining: false });
      this.subscriber = subscriber;
      subscriber.on("error", (error) => this.logError("redis subscriber", error));
      subscriber.on("messageBuffer", (channel: Buffer, message: Buffer) => {
        const group = this.channels.get(channel.toString("utf8"));
        if (!group) return;
        let decoded: FillMessage;
        try {
          decoded = decodeFillMessage(message);
        } catch (error) {
          this.logError("fill message", error as Error);
          return;
        }
        for (const listener of group.listeners) listener(decoded);
      });
      subscriber.connect().catch(() => undefined);
      if (!(await waitReady(subscriber, this.options.connectTimeoutMs ?? 1_000))) {
        // Let the next watch try again on a fresh connection.
        this.subscriberReady = undefined;
        this.subscriber = undefined;
        subscriber.disconnect();
        throw new Error("redis subscriber connection is not ready");
      }
      return subscriber;
    })();
    return this.subscriberReady;
  }

  private decode(key: string, raw: Buffer): CacheEntry | undefined {
    const known = this.decoded.get(key, raw);
    if (known) return known;
    try {
      const entry = decodeEntry(raw);
      this.decoded.set(key, raw, entry);
      return entry;
    } catch (error) {
      // A foreign or corrupt value is a miss; the next versioned set replaces it.
      this.logError(`entry ${key}`, error as Error);
      return undefined;
    }
  }

  private logError(what: string, error: Error): void {
    const now = Date.now();
    if (now - this.lastErrorLog < 5_000) return;
    this.lastErrorLog = now;
    this.options.log.warn({ err: error.message }, `${what} error`);
  }
}

/**
 * The last decoded entry of each recently read key, with a copy of the bytes it came from. A hit
 * reads the same bytes again and again: comparing them replaces decoding the entity (protobuf with
 * a Struct, the largest share of a hit's own work). Same bytes, same entry: the entry object is
 * shared by every reader of the key and never modified (as with L1). Oldest key evicted first.
 */
class DecodedEntries {
  private readonly entries = new Map<string, { readonly raw: Buffer; readonly entry: CacheEntry }>();

  constructor(private readonly maxEntries: number) {}

  get(key: string, raw: Buffer): CacheEntry | undefined {
    const slot = this.entries.get(key);
    return slot !== undefined && slot.raw.equals(raw) ? slot.entry : undefined;
  }

  set(key: string, raw: Buffer, entry: CacheEntry): void {
    if (this.maxEntries <= 0) return;
    // A copy: the reply may be a slice of the client's reusable read buffer.
    this.entries.delete(key);
    this.entries.set(key, { raw: Buffer.from(raw), entry });
    if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
  }
}

function setResult(reply: string): SetResult {
  if (reply === "S") return { stored: true };
  if (reply.startsWith("R")) return { stored: false, current: BigInt(reply.slice(1)) };
  throw new Error(`unexpected versioned-set reply ${JSON.stringify(reply)}`);
}

function pxOf(ttlMs: number): number {
  return Math.max(1, Math.ceil(ttlMs));
}

async function waitReady(client: Redis, timeoutMs: number): Promise<boolean> {
  if (client.status === "ready") return true;
  return new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => finish(false), timeoutMs);
    const onReady = () => finish(true);
    const onEnd = () => finish(false);
    client.once("ready", onReady);
    client.once("end", onEnd);
    function finish(ready: boolean) {
      clearTimeout(timer);
      client.off("ready", onReady);
      client.off("end", onEnd);
      resolve(ready);
    }
  });
}

async function quit(client: Redis): Promise<void> {
  if (client.status === "ready") {
    await Promise.race([client.quit().catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 500))]);
  }
  client.disconnect();
}

