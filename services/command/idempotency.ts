import { createHash } from "node:crypto";
import { Code, invalidArgument, RpcError } from "../../runtime/errors.js";
import type { CallContext } from "../../runtime/call-context.js";
import { principalOf } from "../../runtime/principal.js";

/** gRPC metadata carrying the key (the edge forwards the REST `Idempotency-Key` header as is). */
export const IDEMPOTENCY_KEY_HEADER = "idempotency-key";
/** Response header on a replayed answer. */
export const REPLAYED_HEADER = "idempotent-replayed";
/** Response header publishing when the key stops protecting against duplicates (HTTP-date). */
export const EXPIRES_HEADER = "idempotency-key-expires";
/** Response header the edge turns into the HTTP status. */
export const HTTP_STATUS_HEADER = "x-http-status";

const MAX_KEY_LENGTH = 255;

/**
 * Reads the key as draft-ietf-httpapi-idempotency-key-header-06 defines it: a structured-field
 * String (`"8e03978e-40d5"`, with `\"` and `\\` escapes). A bare value (an sf-token, or what gRPC
 * clients usually send) is accepted too. 1-255 printable ASCII characters.
 */
export function parseIdempotencyKey(raw: string | undefined): string {
  const value = raw?.trim() ?? "";
  if (value === "") {
    throw invalidArgument("IDEMPOTENCY_KEY_MISSING", `writes need an idempotency key: send the Idempotency-Key header (gRPC metadata "${IDEMPOTENCY_KEY_HEADER}")`);
  }
  let key: string;
  if (value.startsWith('"')) {
    key = parseSfString(value);
  } else {
    if (!/^[\x21-\x7e]+$/.test(value) || /["\\]/.test(value)) throw invalidKey("a bare key must be visible ASCII without quotes, backslashes or spaces");
    key = value;
  }
  if (key.length < 1 || key.length > MAX_KEY_LENGTH) throw invalidKey(`the key must be 1-${MAX_KEY_LENGTH} characters, got ${key.length}`);
  return key;
}

function parseSfString(value: string): string {
  let out = "";
  for (let i = 1; i < value.length; i++) {
    const char = value[i]!;
    if (char === "\\") {
      const next = value[++i];
      if (next !== '"' && next !== "\\") throw invalidKey('only \\" and \\\\ escapes are allowed in a structured-field String');
      out += next;
    } else if (char === '"') {
      if (i !== value.length - 1) throw invalidKey("unexpected characters after the closing quote");
      return out;
    } else if (char < " " || char > "~") {
      throw invalidKey("a structured-field String holds printable ASCII only");
    } else {
      out += char;
    }
  }
  throw invalidKey("missing closing quote");
}

function invalidKey(detail: string): RpcError {
  return invalidArgument("IDEMPOTENCY_KEY_INVALID", `invalid idempotency key: ${detail}`);
}

/**
 * Who the key belongs to (runtime/principal.ts): the token subject the edge verified, when the call
 * comes from a trusted edge (or from inside the process, without mTLS); else the mTLS peer; else
 * "anonymous". (The caller's tenant is checked by the write itself, before anything else.)
 */
export function keyOwner(ctx: Pick<CallContext, "headers" | "peer">, trustedPeers: ReadonlySet<string>): string {
  return principalOf(ctx, trustedPeers)?.subject ?? "anonymous";
}

/** sha256 over the method path and the canonical request (JSON with sorted keys). */
export function fingerprint(methodPath: string, canonicalRequest: unknown): string {
  return createHash("sha256").update(methodPath).update("\n").update(canonicalJson(canonicalRequest)).digest("base64url");
}

/** JSON with object keys sorted at every level: the same request always gives the same bytes. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, item]) => item !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${canonicalJson(item)}`).join(",")}}`;
}

/** The 64-bit advisory lock id of one key in its scope: held for the accepting transaction. */
export function keyLockId(tenant: string, principal: string, key: string): string {
  const digest = createHash("sha256").update("umw-idempotency\0").update(tenant).update("\0").update(principal).update("\0").update(key).digest();
  return digest.readBigInt64BE(0).toString();
}

export const keyInUse = () =>
  new RpcError(Code.ABORTED, "IDEMPOTENCY_KEY_IN_USE", "a request with this idempotency key is still being processed; retry later", {}, { "retry-after": "1" });

export const keyReused = () =>
  new RpcError(
    Code.FAILED_PRECONDITION,
    "IDEMPOTENCY_KEY_REUSED",
    "this idempotency key was already used for a different request (another method, target or payload); use a new key",
    {},
    { [HTTP_STATUS_HEADER]: "422" },
  );
