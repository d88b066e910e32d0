import { Code, invalidArgument, RpcError } from "../../runtime/errors.js";
import { HTTP_STATUS_HEADER } from "./idempotency.js";

/** gRPC metadata the edge forwards from the HTTP request headers of the same names. */
export const IF_MATCH_HEADER = "if-match";
export const IF_NONE_MATCH_HEADER = "if-none-match";

/**
 * What a write requires of the entity's current version (RFC 9110 §13.1.1, §13.1.2), from
 * `If-Match` / `If-None-Match` (strong or weak tags: the ETag of an entity is `W/"<version>"`,
 * and writes compare the version, so `"3"` and `W/"3"` both mean version 3) and the request's
 * `expected_version`. Checked against the primary when the write is accepted (412 at once), and
 * by the processor when it applies (`expected_version`, a race ends VERSION_CONFLICT).
 */
export interface Preconditions {
  /** The current version must be one of these; undefined: any. An empty list never holds. */
  readonly versions?: readonly bigint[];
  /** `If-Match: *`: the entity must exist. */
  readonly mustExist: boolean;
  /** `If-None-Match: *`: the entity must not exist. */
  readonly mustNotExist: boolean;
  /** `If-None-Match` with tags: the current version must be none of these. */
  readonly notVersions?: readonly bigint[];
  /** Whether the caller sent a conditional header (part of the idempotency fingerprint). */
  readonly headers?: { readonly ifMatch?: string; readonly ifNoneMatch?: string };
}

export const NO_PRECONDITIONS: Preconditions = { mustExist: false, mustNotExist: false };

export function readPreconditions(headers: Readonly<Record<string, string>>, expectedVersion: bigint): Preconditions {
  const ifMatch = headers[IF_MATCH_HEADER]?.trim();
  const ifNoneMatch = headers[IF_NONE_MATCH_HEADER]?.trim();
  if (!ifMatch && !ifNoneMatch && expectedVersion === 0n) return NO_PRECONDITIONS;
  let versions: bigint[] | undefined;
  let mustExist = false;
  if (ifMatch) {
    const tags = parseTagList(ifMatch, "If-Match");
    if (tags === "*") mustExist = true;
    else versions = tags;
  }
  if (expectedVersion !== 0n) versions = versions ? versions.filter((version) => version === expectedVersion) : [expectedVersion];
  let mustNotExist = false;
  let notVersions: bigint[] | undefined;
  if (ifNoneMatch) {
    const tags = parseTagList(ifNoneMatch, "If-None-Match");
    if (tags === "*") mustNotExist = true;
    else notVersions = tags;
  }
  return {
    versions: versions && [...new Set(versions)],
    mustExist,
    mustNotExist,
    notVersions,
    headers: ifMatch || ifNoneMatch ? { ifMatch, ifNoneMatch } : undefined,
  };
}

/** `*`, or the versions named by a list of entity-tags (tags that are no version never match). */
function parseTagList(header: string, name: string): "*" | bigint[] {
  if (header === "*") return "*";
  const versions: bigint[] = [];
  const pattern = /\s*(W\/)?"([\x21\x23-\x7e\x80-\xff]*)"\s*(,|$)/y;
  let at = 0;
  while (at < header.length) {
    pattern.lastIndex = at;
    const match = pattern.exec(header);
    if (!match) {
      throw invalidArgument("INVALID_PRECONDITION", `${name} must be * or a list of entity-tags such as W/"3"`, { header: name.toLowerCase() });
    }
    const opaque = match[2]!;
    if (/^[1-9][0-9]{0,18}$/.test(opaque)) versions.push(BigInt(opaque));
    at = pattern.lastIndex;
    if (match[3] === "") break;
  }
  return versions;
}

/** The single version the processor must find (0: any), when the preconditions name one. */
export function expectedVersionOf(preconditions: Preconditions): bigint | undefined {
  const { versions } = preconditions;
  if (!versions) return 0n;
  return versions.length === 1 ? versions[0] : undefined;
}

export function preconditionFailed(preconditions: Preconditions, current: bigint | null): RpcError {
  const state = current === null ? "does not exist" : `is at version ${current}`;
  const wanted = preconditions.mustNotExist
    ? "not to exist"
    : preconditions.mustExist && !preconditions.versions
      ? "to exist"
      : preconditions.versions
        ? `to be at version ${preconditions.versions.join(" or ") || "(none that can match)"}`
        : `not to be at version ${preconditions.notVersions?.join(" or ")}`;
  return new RpcError(
    Code.FAILED_PRECONDITION,
    "PRECONDITION_FAILED",
    `the entity ${state}; the write required it ${wanted}`,
    { current_version: current === null ? "" : current.toString() },
    { [HTTP_STATUS_HEADER]: "412" },
  );
}
