import { createHash } from "node:crypto";
import { invalidArgument } from "../../runtime/errors.js";

/**
 * ListEntities page tokens: base64url of [format byte][last key, UTF-8][8-byte checksum]. The
 * checksum covers tenant, type and key, so a token is refused when corrupted, truncated, or
 * replayed against another tenant or type. Opaque to clients; not a secret (the edge authorizes).
 */
const FORMAT = 1;
const CHECKSUM_BYTES = 8;

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 500;

export function encodePageToken(tenant: string, type: string, lastKey: string): string {
  const key = Buffer.from(lastKey, "utf8");
  return Buffer.concat([Buffer.of(FORMAT), key, checksum(tenant, type, key)]).toString("base64url");
}

/** The last key of the previous page; INVALID_ARGUMENT (INVALID_PAGE_TOKEN) when the token is not one of ours. */
export function decodePageToken(tenant: string, type: string, token: string): string {
  const bytes = /^[A-Za-z0-9_-]+$/.test(token) ? Buffer.from(token, "base64url") : Buffer.alloc(0);
  const key = bytes.subarray(1, bytes.length - CHECKSUM_BYTES);
  if (bytes.length < 2 + CHECKSUM_BYTES || bytes[0] !== FORMAT || !checksum(tenant, type, key).equals(bytes.subarray(bytes.length - CHECKSUM_BYTES))) {
    throw invalidArgument("INVALID_PAGE_TOKEN", "page_token is not a token this list returned (for this tenant and type)", { field: "page_token" });
  }
  return key.toString("utf8");
}

/** page_size: 0 means the default, above the maximum is capped (AIP-158), negative is refused. */
export function pageSizeOf(requested: number): number {
  if (requested < 0) throw invalidArgument("INVALID_PAGE_SIZE", `page_size ${requested} must not be negative`, { field: "page_size" });
  return requested === 0 ? DEFAULT_PAGE_SIZE : Math.min(requested, MAX_PAGE_SIZE);
}

function checksum(tenant: string, type: string, key: Buffer): Buffer {
  return createHash("sha256").update(`umw-page-token\u0000${tenant}\u0000${type}\u0000`).update(key).digest().subarray(0, CHECKSUM_BYTES);
}
