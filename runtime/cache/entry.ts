import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { EntitySchema, type Entity } from "../../gen/umw/v1/entity_pb.js";

/**
 * One cache entry: an entity, a cached NOT_FOUND (negative) or a tombstone ("nothing below
 * version v", written by an invalidation). Its wire form is a fixed header the Redis scripts can
 * read without decoding anything, followed by the protobuf Entity bytes:
 *
 *   0..1   "U1"                 magic and format version
 *   2      'E' | 'N' | 'T'      entity, negative, tombstone
 *   3..22  version              20 ASCII digits, zero-padded (compared exactly by the Lua scripts)
 *   23..30 loadedAt             float64 BE, ms since the epoch
 *   31..38 freshUntil           float64 BE: soft expiry (a hit until then)
 *   39..46 staleUntil           float64 BE: end of the serve-stale grace (the Redis PX ends here too)
 *   47..54 loadMs               float64 BE: how long the load took (XFetch delta)
 *   55..   Entity              toBinary(EntitySchema), entities only
 */
export type EntryKind = "entity" | "negative" | "tombstone";

export interface CacheEntry {
  readonly kind: EntryKind;
  readonly version: bigint;
  readonly loadedAt: number;
  readonly freshUntil: number;
  readonly staleUntil: number;
  readonly loadMs: number;
  readonly entity?: Entity;
}

const MAGIC = "U1";
const HEADER = 55;
const VERSION_DIGITS = 20;
const KIND_BYTE: Record<EntryKind, string> = { entity: "E", negative: "N", tombstone: "T" };
const BYTE_KIND: Record<string, EntryKind> = { E: "entity", N: "negative", T: "tombstone" };

export class EntryFormatError extends Error {
  override readonly name = "EntryFormatError";
}

export function encodeEntry(entry: CacheEntry): Buffer {
  if (entry.version < 0n || entry.version > 9_223_372_036_854_775_807n) throw new RangeError(`version ${entry.version} is outside 0..2^63-1`);
  if (entry.kind === "entity" && !entry.entity) throw new TypeError("an entity entry needs its entity");
  const payload = entry.kind === "entity" ? toBinary(EntitySchema, entry.entity!) : new Uint8Array(0);
  const buffer = Buffer.allocUnsafe(HEADER + payload.length);
  buffer.write(MAGIC, 0, "latin1");
  buffer.write(KIND_BYTE[entry.kind], 2, "latin1");
  buffer.write(entry.version.toString().padStart(VERSION_DIGITS, "0"), 3, "latin1");
  buffer.writeDoubleBE(entry.loadedAt, 23);
  buffer.writeDoubleBE(entry.freshUntil, 31);
  buffer.writeDoubleBE(entry.staleUntil, 39);
  buffer.writeDoubleBE(entry.loadMs, 47);
  buffer.set(payload, HEADER);
  return buffer;
}

export function decodeEntry(buffer: Uint8Array): CacheEntry {
  const bytes = Buffer.isBuffer(buffer) ? buffer : Buffer.from(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  if (bytes.length < HEADER || bytes.toString("latin1", 0, 2) !== MAGIC) throw new EntryFormatError("not a umw cache entry");
  const kind = BYTE_KIND[bytes.toString("latin1", 2, 3)];
  const digits = bytes.toString("latin1", 3, 3 + VERSION_DIGITS);
  if (!kind || !/^\d{20}$/.test(digits)) throw new EntryFormatError("corrupt umw cache entry header");
  return {
    kind,
    version: BigInt(digits),
    loadedAt: bytes.readDoubleBE(23),
    freshUntil: bytes.readDoubleBE(31),
    staleUntil: bytes.readDoubleBE(39),
    loadMs: bytes.readDoubleBE(47),
    entity: kind === "entity" ? fromBinary(EntitySchema, bytes.subarray(HEADER)) : undefined,
  };
}

/** The version field of an encoded entry, as the Lua scripts see it. */
export function encodedVersion(buffer: Uint8Array): string {
  return Buffer.from(buffer.buffer, buffer.byteOffset + 3, VERSION_DIGITS).toString("latin1");
}

/** `ttlMs` scaled by a uniform factor in [0.9, 1.1], so keys filled together expire apart. */
export function jitter(ttlMs: number, random: () => number = Math.random): number {
  return Math.max(1, Math.round(ttlMs * (0.9 + 0.2 * random())));
}

export interface EntryTimes {
  readonly now: number;
  /** Fresh lifetime (already jittered). */
  readonly ttlMs: number;
  /** Serve-stale grace after the fresh lifetime. */
  readonly graceMs: number;
  readonly loadMs: number;
}

export function entityEntry(entity: Entity, times: EntryTimes): CacheEntry {
  return {
    kind: "entity",
    version: entity.version,
    entity,
    loadedAt: times.now,
    freshUntil: times.now + times.ttlMs,
    staleUntil: times.now + times.ttlMs + times.graceMs,
    loadMs: times.loadMs,
  };
}

/** A cached NOT_FOUND. Version 0: any real version, and any tombstone, outranks it. */
export function negativeEntry(times: Omit<EntryTimes, "graceMs">): CacheEntry {
  const until = times.now + times.ttlMs;
  return { kind: "negative", version: 0n, loadedAt: times.now, freshUntil: until, staleUntil: until, loadMs: times.loadMs };
}

export function tombstoneEntry(version: bigint, now: number, lifetimeMs: number): CacheEntry {
  return { kind: "tombstone", version, loadedAt: now, freshUntil: now, staleUntil: now + lifetimeMs, loadMs: 0 };
}
