import { invalidArgument } from "../../runtime/errors.js";

/**
 * Where a stream stands: for every partition of the entity-events topic, the offset up to which
 * every matching event was delivered (or superseded by a later state that was delivered), within
 * one hub epoch. Partitions absent from a position mean "from the start of that epoch".
 */
export interface Position {
  /** The hub incarnation whose history the offsets refer to; a restarted hub has a new one. */
  readonly epoch: string;
  readonly offsets: ReadonlyMap<number, number>;
  /** Wall-clock ms when the position was issued; only on streams that follow their own commands. */
  readonly time?: number;
}

interface Wire {
  e: string;
  o: Record<string, number>;
  t?: number;
}

/** base64url of `{"e":epoch,"o":{"<partition>":offset,...},"t"?:ms}`: opaque to clients, short on the wire. */
export function encodePosition(epoch: string, offsets: Iterable<readonly [number, number]>, time?: number): string {
  const wire: Wire = { e: epoch, o: {} };
  for (const [partition, offset] of offsets) wire.o[partition] = offset;
  if (time !== undefined) wire.t = time;
  return Buffer.from(JSON.stringify(wire)).toString("base64url");
}

export function decodePosition(token: string): Position {
  const bad = (why: string) => invalidArgument("INVALID_RESUME_TOKEN", `resume_token is not a position this service issued: ${why}`, { field: "resume_token" });
  if (token.length > 4096 || !/^[A-Za-z0-9_-]+$/.test(token)) throw bad("not base64url");
  let wire: unknown;
  try {
    wire = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw bad("not JSON");
  }
  if (typeof wire !== "object" || wire === null) throw bad("not an object");
  const { e, o, t } = wire as Partial<Wire>;
  if (typeof e !== "string" || e.length === 0) throw bad("no epoch");
  if (typeof o !== "object" || o === null || Array.isArray(o)) throw bad("no offsets");
  const offsets = new Map<number, number>();
  for (const [partition, offset] of Object.entries(o)) {
    const p = Number(partition);
    if (!Number.isSafeInteger(p) || p < 0 || !Number.isSafeInteger(offset) || offset < -1) throw bad(`offset ${partition}=${String(offset)}`);
    offsets.set(p, offset);
  }
  if (t !== undefined && !Number.isFinite(t)) throw bad("time");
  return t === undefined ? { epoch: e, offsets } : { epoch: e, offsets, time: t };
}
