/**
 * Member names that address a JavaScript object's prototype. umw refuses them as payload keys and
 * as update_mask path segments (INVALID_ARGUMENT, reason RESERVED_KEY), at any depth, at the edge
 * and in CommandService; the processor's merge patch refuses them again, so no write can reach
 * `Object.prototype` through a payload.
 */
export const RESERVED_KEYS: ReadonlySet<string> = new Set(["__proto__", "constructor", "prototype"]);

export function isReservedKey(key: string): boolean {
  return RESERVED_KEYS.has(key);
}

/** The first reserved segment of a dot-separated field path, if any. */
export function reservedSegment(path: string): string | undefined {
  return path.split(".").find(isReservedKey);
}
