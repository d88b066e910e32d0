/**
 * How a read was answered, and its RFC 9211 Cache-Status form (sent as the `umw-cache-status`
 * response header; the edge turns it into `Cache-Status`).
 */
export type CacheStatus =
  /** Fresh entry: `umw; hit; ttl=N` (N = seconds of freshness left); `detail=l1` from the in-process layer. */
  | { readonly kind: "hit"; readonly ttlMs: number; readonly layer: "l1" | "redis" }
  /** Cached NOT_FOUND: `umw; hit; detail=negative`. */
  | { readonly kind: "negative-hit"; readonly ttlMs: number }
  /**
   * This request loaded from the backend: `umw; fwd=miss; stored`, or `fwd=request` when the cached
   * entry was fresh but older than the request's min_version. Not stored: `detail` says why.
   */
  | { readonly kind: "miss"; readonly fwd: "miss" | "request"; readonly stored: boolean; readonly detail?: string | undefined }
  /** Answered by another request's load: `umw; fwd=uri-miss; collapsed`. */
  | { readonly kind: "collapsed" }
  /** The backend failed and a stale copy answered: `umw; fwd=stale; detail=<why>`. */
  | { readonly kind: "stale"; readonly detail: string }
  /** Not cacheable (lists): `umw; fwd=bypass`. */
  | { readonly kind: "bypass" }
  /** A batch whose keys were answered in different ways: `umw; fwd=partial; detail="..."`. */
  | { readonly kind: "partial"; readonly counts: Readonly<Record<string, number>> };

export const CACHE_STATUS_HEADER = "umw-cache-status";
const BATCH_ORDER = ["hit", "miss", "collapsed", "stale", "bypass", "partial"];
const CACHE_NAME = "umw";

export function formatCacheStatus(status: CacheStatus): string {
  switch (status.kind) {
    case "hit":
      return `${CACHE_NAME}; hit; ttl=${seconds(status.ttlMs)}${status.layer === "l1" ? "; detail=l1" : ""}`;
    case "negative-hit":
      return `${CACHE_NAME}; hit; detail=negative`;
    case "miss":
      return `${CACHE_NAME}; fwd=${status.fwd}${status.stored ? "; stored" : ""}${status.detail ? `; detail=${status.detail}` : ""}`;
    case "collapsed":
      return `${CACHE_NAME}; fwd=uri-miss; collapsed`;
    case "stale":
      return `${CACHE_NAME}; fwd=stale; detail=${status.detail}`;
    case "bypass":
      return `${CACHE_NAME}; fwd=bypass`;
    case "partial":
      return `${CACHE_NAME}; fwd=partial; detail="${Object.entries(status.counts)
        .map(([kind, count]) => `${kind}=${count}`)
        .join(" ")}"`;
  }
}

/** One status for a batch: the common one when all keys agree, else `partial` with counts. */
export function batchCacheStatus(statuses: readonly CacheStatus[]): CacheStatus {
  if (statuses.length === 0) return { kind: "bypass" };
  const tally: Record<string, number> = {};
  for (const status of statuses) {
    const name = status.kind === "negative-hit" ? "hit" : status.kind;
    tally[name] = (tally[name] ?? 0) + 1;
  }
  // A fixed order, so equal batches produce equal headers.
  const counts = Object.fromEntries(BATCH_ORDER.filter((kind) => tally[kind]).map((kind) => [kind, tally[kind]!]));
  const kinds = Object.keys(counts);
  if (kinds.length > 1) return { kind: "partial", counts };
  if (kinds[0] === "hit") {
    const ttlMs = Math.min(...statuses.map((status) => ("ttlMs" in status ? status.ttlMs : Infinity)));
    return { kind: "hit", ttlMs, layer: statuses.every((status) => status.kind === "hit" && status.layer === "l1") ? "l1" : "redis" };
  }
  if (kinds[0] === "miss") {
    const misses = statuses as Extract<CacheStatus, { kind: "miss" }>[];
    const allStored = misses.every((status) => status.stored);
    return { kind: "miss", fwd: "miss", stored: allStored, detail: allStored ? undefined : misses.find((status) => status.detail)?.detail };
  }
  return statuses[0]!;
}

function seconds(ms: number): number {
  return Math.max(0, Math.floor(ms / 1000));
}
