import type { DescField, DescMessage } from "@bufbuild/protobuf";

/**
 * Entity tags (RFC 9110 §8.8.3, §13.1.2). The edge derives a weak validator `W/"<version>"` from
 * the version of the entity a response carries, and evaluates If-None-Match with weak comparison.
 */

/** Where a response message keeps the version of the one entity it carries. */
export type VersionLocator = readonly DescField[];

/**
 * Finds the version of an entity in responses of `output`: the output itself, or a singular
 * top-level field, of one of the `versionedTypes` (e.g. umw.v1.Entity), with an integer `version`.
 */
export function versionLocator(output: DescMessage, versionedTypes: ReadonlySet<string>): VersionLocator | undefined {
  const versionOf = (message: DescMessage) => {
    const field = message.fields.find((candidate) => candidate.name === "version");
    return field?.fieldKind === "scalar" ? field : undefined;
  };
  if (versionedTypes.has(output.typeName)) {
    const version = versionOf(output);
    return version ? [version] : undefined;
  }
  for (const field of output.fields) {
    if (field.fieldKind !== "message" || field.oneof || !versionedTypes.has(field.message.typeName)) continue;
    const version = versionOf(field.message);
    if (version) return [field, version];
  }
  return undefined;
}

/** The weak ETag of a response, or undefined when it carries no entity or version 0. */
export function entityTag(response: unknown, locator: VersionLocator): string | undefined {
  let value: unknown = response;
  for (const field of locator) {
    if (value === undefined || value === null) return undefined;
    value = (value as Record<string, unknown>)[field.localName];
  }
  if (value === undefined || value === null || value === 0n || value === 0 || value === "0" || value === "") return undefined;
  return `W/"${String(value)}"`;
}

/**
 * If-None-Match against the current tag, weak comparison: true when the header is `*` (a current
 * representation exists) or lists a tag whose opaque part equals the current one's.
 */
export function noneMatch(header: string, current: string | undefined): boolean {
  const trimmed = header.trim();
  if (trimmed === "*") return true;
  if (current === undefined) return false;
  const opaque = current.startsWith("W/") ? current.slice(2) : current;
  let i = 0;
  const n = header.length;
  while (i < n) {
    const c = header.charCodeAt(i);
    if (c === 0x20 || c === 0x09 || c === 0x2c) {
      i++;
      continue;
    }
    if (header.startsWith("W/", i)) i += 2;
    if (header[i] !== '"') {
      // Not an entity-tag: skip to the next comma.
      const comma = header.indexOf(",", i);
      if (comma < 0) break;
      i = comma + 1;
      continue;
    }
    const close = header.indexOf('"', i + 1);
    if (close < 0) break;
    if (close + 1 - i === opaque.length && header.startsWith(opaque, i)) return true;
    i = close + 1;
  }
  return false;
}
