import { existsSync, readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { Code, RpcError } from "./errors.js";
import { PRINCIPAL_HEADERS } from "./principal.js";

/**
 * Which mesh identity (the DNS SAN of its client certificate) may call which method: identity →
 * method patterns, each `package.Service/Method`, `package.Service/*` or `*`. The identity `*`
 * stands for every peer. An identity that is not listed may call nothing.
 */
export type MeshAuthzTable = Readonly<Record<string, readonly string[]>>;

const PUBLIC_METHODS = ["umw.v1.QueryService/*", "umw.v1.CommandService/*", "umw.v1.RealtimeService/*"];
const REGISTRATION = "umw.controlplane.v1.RegistrationService/*";
const ADS = "envoy.service.discovery.v3.AggregatedDiscoveryService/*";
const EXT_AUTHZ = "envoy.service.auth.v3.Authorization/Check";
const RATE_LIMIT = "envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";

/**
 * The built-in table (docs/security.md, "Mesh identity and authorization"). Users reach the public
 * methods only through an edge (the Node edge, Envoy); the cli is the operator's identity and calls
 * them as itself, and so does the canary (the end-to-end prober); query, command, realtime, policy
 * and ratelimit register with the control plane; Envoy also reads its configuration there and asks
 * the policy (ext_authz) and rate limit services; the workers and the control plane call nothing. Health and reflection are
 * not in the table: every peer with a certificate of the mesh CA may use them.
 */
export const DEFAULT_MESH_AUTHZ: MeshAuthzTable = {
  edge: PUBLIC_METHODS,
  envoy: [...PUBLIC_METHODS, ADS, EXT_AUTHZ, RATE_LIMIT],
  cli: PUBLIC_METHODS,
  canary: PUBLIC_METHODS,
  query: [REGISTRATION],
  command: [REGISTRATION],
  realtime: [REGISTRATION],
  policy: [REGISTRATION],
  ratelimit: [REGISTRATION],
  relay: [],
  processor: [],
  "cache-updater": [],
  "control-plane": [],
};

/** Metadata that asserts who a call acts for: the principal contract, and the edge's client connection. */
export const ASSERTION_HEADERS: readonly string[] = [...Object.values(PRINCIPAL_HEADERS), "x-umw-connection-id"];

const pattern = z.string().regex(/^(\*|[A-Za-z_][\w.]*\/(\*|\w+))$/, "must be package.Service/Method, package.Service/* or *");
const tableSchema = z.record(z.string().min(1), z.array(pattern));

/**
 * UMW_MESH_AUTHZ: unset = the built-in table; a value starting with `{` = the table inline (JSON, or
 * YAML flow style); anything else = the path of a YAML or JSON file holding it; in the UMW_CONFIG
 * file, also the mapping itself. A given table replaces the built-in one entirely.
 */
export function parseMeshAuthz(value: unknown): MeshAuthzTable {
  if (value === undefined || value === null || (typeof value === "string" && value.trim() === "")) return DEFAULT_MESH_AUTHZ;
  let parsed = value;
  if (typeof value === "string") {
    const inline = value.trim().startsWith("{");
    if (!inline && !existsSync(value)) throw new Error(`no such file: ${value} (an inline table starts with "{")`);
    try {
      parsed = parseYaml(inline ? value : readFileSync(value, "utf8"));
    } catch (error) {
      throw new Error(`not YAML or JSON: ${(error as Error).message}`);
    }
  }
  const result = tableSchema.safeParse(parsed);
  if (!result.success) throw new Error(result.error.issues.map((issue) => `${issue.path.join(".") || "table"}: ${issue.message}`).join("; "));
  return result.data;
}

export interface MeshCall {
  /** The mTLS peer's identity; undefined on an insecure port (in-process, benchmarks), where nothing is checked. */
  readonly peer: string | undefined;
  /** `package.Service/Method`. */
  readonly method: string;
  readonly headers: Readonly<Record<string, string>>;
}

/** Decides mesh calls by the table, and who may assert a principal (UMW_TRUSTED_PRINCIPAL_PEERS). */
export class MeshAuthorization {
  private readonly allowed: ReadonlyMap<string, readonly string[]>;
  private readonly assertingPeers: ReadonlySet<string>;

  constructor(table: MeshAuthzTable, assertingPeers: Iterable<string>) {
    this.allowed = new Map(Object.entries(table));
    this.assertingPeers = new Set(assertingPeers);
  }

  /** The refusal of a call (PERMISSION_DENIED with its reason), or undefined when it may go on. */
  check({ peer, method, headers }: MeshCall): RpcError | undefined {
    if (peer === undefined) return undefined;
    if (!this.mayCall(peer, method)) {
      return new RpcError(Code.PERMISSION_DENIED, "MESH_METHOD_DENIED", `mesh identity ${peer} may not call ${method}`, { peer, method });
    }
    const asserted = ASSERTION_HEADERS.filter((name) => headers[name] !== undefined);
    if (asserted.length && !this.assertingPeers.has(peer)) {
      return new RpcError(Code.PERMISSION_DENIED, "PRINCIPAL_ASSERTION_DENIED", `mesh identity ${peer} may not assert who a call acts for (${asserted.join(", ")})`, {
        peer,
        headers: asserted.join(","),
      });
    }
    return undefined;
  }

  mayCall(peer: string, method: string): boolean {
    const service = method.slice(0, method.indexOf("/"));
    const patterns = [...(this.allowed.get(peer) ?? []), ...(this.allowed.get("*") ?? [])];
    return patterns.some((allowed) => allowed === "*" || allowed === method || allowed === `${service}/*`);
  }
}
