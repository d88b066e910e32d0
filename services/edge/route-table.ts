import type { HttpBinding } from "./http-rules.js";
import { matchPathTemplate, splitRequestPath } from "./path-template.js";

export interface RouteMatch {
  readonly binding: HttpBinding;
  /** Path variable values, in the order of binding.pathFields. */
  readonly values: readonly string[];
}

/**
 * Every REST binding, compiled at startup and grouped by HTTP method. Within a method, templates
 * with a custom verb are tried first (so `/things/x:watch` is the watch call, not thing "x:watch"),
 * then the ones with more literal segments, fixed-length before `**`, then declaration order.
 */
export class RouteTable {
  private readonly byMethod = new Map<string, HttpBinding[]>();

  constructor(bindings: readonly HttpBinding[]) {
    for (const binding of bindings) {
      let list = this.byMethod.get(binding.httpMethod);
      if (!list) this.byMethod.set(binding.httpMethod, (list = []));
      list.push(binding);
    }
    for (const list of this.byMethod.values()) {
      list.sort(
        (a, b) =>
          Number(b.template.verb !== undefined) - Number(a.template.verb !== undefined) ||
          b.template.literals - a.template.literals ||
          Number(a.template.open) - Number(b.template.open),
      );
    }
    // HEAD is GET without a body, unless a rule binds HEAD itself.
    if (!this.byMethod.has("HEAD") && this.byMethod.has("GET")) this.byMethod.set("HEAD", this.byMethod.get("GET")!);
  }

  get size(): number {
    let size = 0;
    for (const [method, list] of this.byMethod) if (method !== "HEAD" || list !== this.byMethod.get("GET")) size += list.length;
    return size;
  }

  /** The binding for this method and path (no query), or undefined. May throw PathDecodeError. */
  match(httpMethod: string, path: string): RouteMatch | undefined {
    const list = this.byMethod.get(httpMethod);
    return list ? matchIn(list, path) : undefined;
  }

  /** The methods that would accept this path: for 405 Allow, or empty for a 404. */
  allowed(path: string): string[] {
    const methods: string[] = [];
    for (const [method, list] of this.byMethod) {
      try {
        if (matchIn(list, path)) methods.push(method);
      } catch {
        // A path that does not decode is matched by no method.
      }
    }
    if (methods.length > 0) methods.push("OPTIONS");
    return methods;
  }
}

function matchIn(list: readonly HttpBinding[], path: string): RouteMatch | undefined {
  let plain: string[] | undefined;
  for (const binding of list) {
    const { verb } = binding.template;
    const parts = verb === undefined ? (plain ??= splitRequestPath(path, undefined)) : splitRequestPath(path, verb);
    if (!parts) continue;
    const values = matchPathTemplate(binding.template, parts);
    if (values) return { binding, values };
  }
  return undefined;
}
