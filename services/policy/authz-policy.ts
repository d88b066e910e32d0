import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { loadPolicy, type LoadedPolicy } from "@open-policy-agent/opa-wasm";
import type { Principal } from "../../runtime/principal.js";

/** The compiled policy (scripts/policy.sh build), committed next to its Rego. */
export const DEFAULT_POLICY_WASM = fileURLToPath(new URL("../../policy/authz.wasm", import.meta.url));

/** The rule the wasm module exports (`opa build -e`). */
export const POLICY_ENTRYPOINT = "umw/authz/decision";

/** A subscription topic as the policy sees it. */
export interface PolicyTopic {
  readonly kind: "entity" | "type" | "ownCommands";
  readonly tenant: string;
  /** For ownCommands: whose commands. */
  readonly principal?: string;
}

/** Distinct input documents whose decision is kept (per process). */
const DECISIONS_KEPT = 4096;

/** The input document of policy/authz.rego. */
export interface PolicyInput {
  /** gRPC full method name without the leading slash: `umw.v1.QueryService/GetEntity`. */
  readonly method: string;
  /** The tenants the request targets. */
  readonly tenants: readonly string[];
  readonly principal?: Pick<Principal, "kind" | "subject" | "tenant" | "scopes" | "roles">;
  readonly topics?: readonly PolicyTopic[];
}

export type Decision = { readonly allow: true } | { readonly allow: false; readonly reason: string };

/** Evaluates the compiled Rego in-process: loaded once, then one synchronous wasm call per decision. */
export class AuthzPolicy {
  /**
   * Decisions by input document. The policy reads nothing but its input (no time, no data after
   * load: setData once, in load()), so a decision for the same document is the same decision; the
   * wasm call (JSON in and out of wasm memory) is most of a decision's cost. Oldest dropped first.
   */
  private readonly decisions = new Map<string, Decision>();

  private constructor(private readonly policy: LoadedPolicy) {}

  /** Compiles and instantiates the wasm module (a few milliseconds; do it once per process). */
  static async load(wasm: Uint8Array | string = DEFAULT_POLICY_WASM): Promise<AuthzPolicy> {
    const bytes = typeof wasm === "string" ? readFileSync(wasm) : wasm;
    const policy = await loadPolicy(bytes);
    policy.setData({});
    return new AuthzPolicy(policy);
  }

  decide(input: PolicyInput): Decision {
    const document = policyDocument(input);
    const key = JSON.stringify(document);
    const known = this.decisions.get(key);
    if (known) return known;
    const results = this.policy.evaluate(document, POLICY_ENTRYPOINT) as Array<{ result?: Decision }>;
    const decision = results[0]?.result;
    if (!decision || typeof decision.allow !== "boolean") throw new Error(`the policy gave no decision for ${input.method}`);
    this.decisions.set(key, decision);
    if (this.decisions.size > DECISIONS_KEPT) this.decisions.delete(this.decisions.keys().next().value!);
    return decision;
  }
}

/** The input without undefined members (a JSON document: `tenant: undefined` must be absent, not null). */
function policyDocument(input: PolicyInput): unknown {
  const principal = input.principal && {
    kind: input.principal.kind,
    subject: input.principal.subject,
    ...(input.principal.tenant === undefined ? {} : { tenant: input.principal.tenant }),
    scopes: input.principal.scopes,
    roles: input.principal.roles,
  };
  return { method: input.method, tenants: input.tenants, ...(principal ? { principal } : {}), ...(input.topics ? { topics: input.topics } : {}) };
}

let shared: Promise<AuthzPolicy> | undefined;

/** The process's one instance of the committed policy. */
export function sharedAuthzPolicy(): Promise<AuthzPolicy> {
  return (shared ??= AuthzPolicy.load());
}
