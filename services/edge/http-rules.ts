import { getOption, hasOption, type DescField, type DescMethod, type DescService } from "@bufbuild/protobuf";
import { http } from "../../gen/google/api/annotations_pb.js";
import type { HttpRule } from "../../gen/google/api/http_pb.js";
import { versionLocator, type VersionLocator } from "./entity-tags.js";
import { findField, resolveFieldPath } from "./field-text.js";
import { parsePathTemplate, type PathTemplate } from "./path-template.js";

/** One REST binding of one RPC: an HTTP method and path template, and where the request's fields come from. */
export interface HttpBinding {
  readonly httpMethod: string;
  readonly template: PathTemplate;
  readonly method: DescMethod;
  /** Field chain per path variable, in the template's order. */
  readonly pathFields: readonly (readonly DescField[])[];
  /** `*` (the whole request), a top-level field, or undefined (no body). */
  readonly body: "*" | DescField | undefined;
  /** The response field sent as the body instead of the whole response. */
  readonly responseBody: DescField | undefined;
  /** Fields bound by the path or the body: query parameters naming them (or inside them) are ignored. */
  readonly boundFields: readonly (readonly DescField[])[];
  /** Where the response keeps the version that becomes the ETag. */
  readonly etag: VersionLocator | undefined;
}

export class HttpRuleError extends Error {
  override readonly name = "HttpRuleError";
}

/**
 * Reads the google.api.http annotations of every method of the services (the rule and one level
 * of additional_bindings) and checks them against the request and response messages. Throws at
 * startup on a rule that cannot work, so a bad annotation never becomes a runtime surprise.
 */
export function readHttpBindings(services: readonly DescService[], versionedTypes: ReadonlySet<string>): HttpBinding[] {
  const bindings: HttpBinding[] = [];
  for (const service of services) {
    for (const method of service.methods) {
      if (!hasOption(method, http)) continue;
      const rule = getOption(method, http);
      bindings.push(bindingOf(method, rule, versionedTypes));
      for (const additional of rule.additionalBindings) {
        if (additional.additionalBindings.length > 0) {
          throw new HttpRuleError(`${where(method)}: additional_bindings cannot nest`);
        }
        bindings.push(bindingOf(method, additional, versionedTypes));
      }
    }
  }
  const seen = new Map<string, DescMethod>();
  for (const binding of bindings) {
    const key = `${binding.httpMethod} ${binding.template.source}`;
    const other = seen.get(key);
    if (other) throw new HttpRuleError(`${key} is bound by both ${where(other)} and ${where(binding.method)}`);
    seen.set(key, binding.method);
  }
  return bindings;
}

function bindingOf(method: DescMethod, rule: HttpRule, versionedTypes: ReadonlySet<string>): HttpBinding {
  if (method.methodKind !== "unary" && method.methodKind !== "server_streaming") {
    throw new HttpRuleError(`${where(method)}: only unary and server-streaming methods can be transcoded`);
  }
  let httpMethod: string;
  let path: string;
  switch (rule.pattern.case) {
    case "get":
    case "put":
    case "post":
    case "delete":
    case "patch":
      httpMethod = rule.pattern.case.toUpperCase();
      path = rule.pattern.value;
      break;
    case "custom":
      httpMethod = rule.pattern.value.kind.toUpperCase();
      path = rule.pattern.value.path;
      break;
    default:
      throw new HttpRuleError(`${where(method)}: google.api.http has no pattern`);
  }
  let template: PathTemplate;
  try {
    template = parsePathTemplate(path);
  } catch (error) {
    throw new HttpRuleError(`${where(method)}: ${(error as Error).message}`);
  }
  const pathFields = template.variables.map((variable) => {
    const chain = resolveFieldPath(method.input, variable.fieldPath);
    const leaf = chain?.[chain.length - 1];
    if (!chain || !leaf) throw new HttpRuleError(`${where(method)}: path variable ${variable.fieldPath} is not a field of ${method.input.typeName}`);
    if (leaf.fieldKind === "list" || leaf.fieldKind === "map") {
      throw new HttpRuleError(`${where(method)}: path variable ${variable.fieldPath} must be a singular field`);
    }
    return chain;
  });
  let body: HttpBinding["body"];
  if (rule.body === "*") body = "*";
  else if (rule.body !== "") {
    body = findField(method.input, rule.body);
    if (!body || body.name !== rule.body) throw new HttpRuleError(`${where(method)}: body ${rule.body} is not a top-level field of ${method.input.typeName}`);
  }
  let responseBody: DescField | undefined;
  if (rule.responseBody !== "") {
    responseBody = findField(method.output, rule.responseBody);
    if (!responseBody || responseBody.name !== rule.responseBody) {
      throw new HttpRuleError(`${where(method)}: response_body ${rule.responseBody} is not a top-level field of ${method.output.typeName}`);
    }
  }
  return {
    httpMethod,
    template,
    method,
    pathFields,
    body,
    responseBody,
    boundFields: typeof body === "object" ? [...pathFields, [body]] : pathFields,
    etag: versionLocator(method.output, versionedTypes),
  };
}

function where(method: DescMethod): string {
  return `${method.parent.typeName}.${method.name}`;
}
