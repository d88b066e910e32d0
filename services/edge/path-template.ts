/**
 * google.api.HttpRule path templates (google/api/http.proto):
 *
 *     Template = "/" Segments [ Verb ] ;
 *     Segments = Segment { "/" Segment } ;
 *     Segment  = "*" | "**" | LITERAL | Variable ;
 *     Variable = "{" FieldPath [ "=" Segments ] "}" ;
 *     FieldPath = IDENT { "." IDENT } ;
 *     Verb     = ":" LITERAL ;
 *
 * `{var}` is `{var=*}`; `**` matches zero or more segments and may only be the last segment.
 * A template is parsed once at startup; matching works on the request path split on "/".
 */

export type Segment =
  | { readonly kind: "literal"; readonly value: string }
  /** `*`: exactly one non-empty segment. */
  | { readonly kind: "single" }
  /** `**`: zero or more segments, always last. */
  | { readonly kind: "multi" };

export interface PathVariable {
  /** Dotted field path, e.g. `name` or `book.name`. */
  readonly fieldPath: string;
  /** Index of the variable's first segment in the template. */
  readonly start: number;
  /** Index after the variable's last segment in the template. */
  readonly end: number;
  /** The variable ends with `**` (it captures to the end of the path). */
  readonly multi: boolean;
}

export interface PathTemplate {
  readonly source: string;
  readonly segments: readonly Segment[];
  readonly variables: readonly PathVariable[];
  /** The custom verb after `:`, e.g. `watch`; undefined when the template has none. */
  readonly verb: string | undefined;
  /** Number of literal segments: the more, the more specific the template. */
  readonly literals: number;
  /** The template ends with `**`: the path may be longer than the template. */
  readonly open: boolean;
}

export class PathTemplateError extends Error {
  override readonly name = "PathTemplateError";
  constructor(template: string, problem: string) {
    super(`invalid path template ${JSON.stringify(template)}: ${problem}`);
  }
}

/** A request path segment with a malformed percent-encoding. */
export class PathDecodeError extends Error {
  override readonly name = "PathDecodeError";
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;
// RFC 3986 pchar without ":" (the verb separator), plus "%" for escapes.
const LITERAL = /^[A-Za-z0-9\-._~!$&'()+,;=@%]+$/;

export function parsePathTemplate(source: string): PathTemplate {
  if (!source.startsWith("/")) throw new PathTemplateError(source, "must start with '/'");
  let body = source.slice(1);
  let verb: string | undefined;
  // The verb is a ":" outside braces, after the last "/".
  const colon = findVerbColon(body);
  if (colon >= 0) {
    verb = body.slice(colon + 1);
    body = body.slice(0, colon);
    if (!LITERAL.test(verb)) throw new PathTemplateError(source, `bad verb ${JSON.stringify(verb)}`);
  }
  const segments: Segment[] = [];
  const variables: PathVariable[] = [];
  for (const token of splitTopLevel(source, body)) {
    if (token.startsWith("{")) {
      if (!token.endsWith("}")) throw new PathTemplateError(source, `unterminated variable ${JSON.stringify(token)}`);
      const inner = token.slice(1, -1);
      const eq = inner.indexOf("=");
      const fieldPath = eq < 0 ? inner : inner.slice(0, eq);
      if (!fieldPath.split(".").every((part) => IDENT.test(part))) {
        throw new PathTemplateError(source, `bad field path ${JSON.stringify(fieldPath)}`);
      }
      if (variables.some((variable) => variable.fieldPath === fieldPath)) {
        throw new PathTemplateError(source, `field ${fieldPath} bound twice`);
      }
      const start = segments.length;
      const inside = eq < 0 ? "*" : inner.slice(eq + 1);
      if (inside === "") throw new PathTemplateError(source, `empty pattern for ${fieldPath}`);
      for (const part of inside.split("/")) {
        if (part.includes("{") || part.includes("}")) throw new PathTemplateError(source, "variables cannot nest");
        segments.push(plainSegment(source, part));
      }
      variables.push({ fieldPath, start, end: segments.length, multi: segments[segments.length - 1]!.kind === "multi" });
    } else {
      segments.push(plainSegment(source, token));
    }
  }
  const multiAt = segments.findIndex((segment) => segment.kind === "multi");
  if (multiAt >= 0 && multiAt !== segments.length - 1) throw new PathTemplateError(source, "'**' must be the last segment");
  return {
    source,
    segments,
    variables,
    verb,
    literals: segments.filter((segment) => segment.kind === "literal").length,
    open: multiAt >= 0,
  };
}

function findVerbColon(body: string): number {
  let depth = 0;
  let lastSlash = -1;
  let colon = -1;
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (c === "{") depth++;
    else if (c === "}") depth--;
    else if (depth === 0 && c === "/") {
      lastSlash = i;
      colon = -1;
    } else if (depth === 0 && c === ":" && colon < 0) colon = i;
  }
  return colon > lastSlash ? colon : -1;
}

/** Splits on "/" outside braces. */
function splitTopLevel(source: string, body: string): string[] {
  const tokens: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (c === "{") {
      if (depth > 0) throw new PathTemplateError(source, "variables cannot nest");
      depth++;
    } else if (c === "}") {
      if (depth === 0) throw new PathTemplateError(source, "unbalanced '}'");
      depth--;
    } else if (c === "/" && depth === 0) {
      tokens.push(body.slice(start, i));
      start = i + 1;
    }
  }
  if (depth !== 0) throw new PathTemplateError(source, "unbalanced '{'");
  tokens.push(body.slice(start));
  return tokens;
}

function plainSegment(source: string, token: string): Segment {
  if (token === "*") return { kind: "single" };
  if (token === "**") return { kind: "multi" };
  if (token === "") throw new PathTemplateError(source, "empty segment");
  if (!LITERAL.test(token)) throw new PathTemplateError(source, `bad literal ${JSON.stringify(token)}`);
  return { kind: "literal", value: token };
}

/**
 * Matches the path segments of a request (the part after the leading "/", split on "/", verb
 * already removed) against the template. Returns the variable values in the template's order
 * (percent-decoded; a `**` capture keeps `%2F` encoded so its "/" stay unambiguous), or undefined.
 * Throws PathDecodeError on a malformed escape inside a matching segment.
 */
export function matchPathTemplate(template: PathTemplate, parts: readonly string[]): string[] | undefined {
  const { segments } = template;
  const fixed = template.open ? segments.length - 1 : segments.length;
  if (template.open ? parts.length < fixed : parts.length !== fixed) return undefined;
  for (let i = 0; i < fixed; i++) {
    const segment = segments[i]!;
    const part = parts[i]!;
    if (segment.kind === "literal") {
      if (part !== segment.value && !(part.includes("%") && decodeSegment(part) === segment.value)) return undefined;
    } else if (part === "") {
      return undefined;
    }
  }
  const values: string[] = new Array(template.variables.length);
  for (let v = 0; v < template.variables.length; v++) {
    const variable = template.variables[v]!;
    const end = variable.multi ? parts.length : variable.end;
    if (end - variable.start === 1) {
      values[v] = decodeSegment(parts[variable.start]!);
    } else {
      let value = "";
      for (let i = variable.start; i < end; i++) value += (i > variable.start ? "/" : "") + decodeSegment(parts[i]!, true);
      values[v] = value;
    }
  }
  return values;
}

/** Percent-decodes one segment; with keepSlash, an encoded "/" stays `%2F`. */
export function decodeSegment(part: string, keepSlash = false): string {
  if (!part.includes("%")) return part;
  try {
    return decodeURIComponent(keepSlash ? part.replace(/%2F/gi, "%252F") : part);
  } catch {
    throw new PathDecodeError(`malformed percent-encoding in path segment ${JSON.stringify(part)}`);
  }
}

/**
 * Splits a request path (starting with "/", no query) for templates with the given verb:
 * returns the segments with `:verb` removed from the last one, or undefined when the path does
 * not end with that verb. Without a verb, the last segment is kept whole (it may contain ":").
 */
export function splitRequestPath(path: string, verb: string | undefined): string[] | undefined {
  if (verb === undefined) return path.slice(1).split("/");
  const suffix = `:${verb}`;
  if (!path.endsWith(suffix)) return undefined;
  const rest = path.slice(1, path.length - suffix.length);
  if (rest.length > 0 && rest.endsWith("/")) return undefined;
  return rest.split("/");
}
