import type { CallContext } from "../../runtime/call-context.js";
import { Code, RpcError } from "../../runtime/errors.js";
import { principalOf } from "../../runtime/principal.js";

/** Metadata the edge sets from the verified token; a mesh caller may leave them out. */
export const HEADERS = {
  tenant: "x-umw-tenant",
  principal: "x-umw-principal",
  tokenExpiresAt: "x-umw-token-expires-at",
  connectionId: "x-umw-connection-id",
} as const;

/** Who is subscribing. */
export interface Caller {
  /** The tenant the caller belongs to: the verified token's (from a trusted edge) or, for a mesh caller, the request's. */
  readonly tenant: string;
  /** Whether the tenant came from verified metadata rather than from the request. */
  readonly tenantFromToken: boolean;
  /** Subject of the token (`x-umw-principal`) or, for a mesh caller, its mTLS identity. */
  readonly principal: string | undefined;
  /** Whether the caller is a user with a verified token (rather than a mesh service). */
  readonly user: boolean;
  /** When the caller's token expires, epoch ms; undefined for a mesh service. */
  readonly expiresAt: number | undefined;
  readonly peer: string | undefined;
  /** All incoming metadata, for a policy that looks at more (scopes, roles). */
  readonly headers: Readonly<Record<string, string>>;
}

/** What one subscription asks for, with every name resolved. */
export type TopicTarget =
  | { readonly kind: "entity"; readonly tenant: string; readonly type: string; readonly id: string }
  | { readonly kind: "type"; readonly tenant: string; readonly type: string }
  | { readonly kind: "ownCommands"; readonly tenant: string; readonly principal: string };

export interface SubscriptionAsk {
  readonly tenant: string;
  readonly topics: readonly TopicTarget[];
}

/**
 * Decides whether a caller may open a subscription; throws an RpcError (PERMISSION_DENIED) when
 * not. The port OPA will implement; consulted once per stream, before anything is sent.
 */
export interface SubscriptionPolicy {
  authorize(caller: Caller, ask: SubscriptionAsk): void | Promise<void>;
}

/** Tenant isolation: a caller hears only of its own tenant's entities and of its own commands. */
export const tenantIsolation: SubscriptionPolicy = {
  authorize(caller, ask) {
    const denied = (tenant: string) =>
      new RpcError(Code.PERMISSION_DENIED, "CROSS_TENANT_SUBSCRIPTION", `tenant ${JSON.stringify(caller.tenant)} may not subscribe to tenant ${JSON.stringify(tenant)}`, {
        tenant,
        callerTenant: caller.tenant,
      });
    if (ask.tenant !== caller.tenant) throw denied(ask.tenant);
    for (const topic of ask.topics) {
      if (topic.tenant !== caller.tenant) throw denied(topic.tenant);
      if (topic.kind === "ownCommands" && topic.principal !== caller.principal) {
        throw new RpcError(Code.PERMISSION_DENIED, "FOREIGN_COMMANDS", "only the caller's own commands can be followed");
      }
    }
  },
};

/**
 * The caller, as the command service sees it (so own commands match `umw_commands.principal`): the
 * principal of runtime/principal.ts (the user a trusted edge asserts, from its verified token, or
 * the mTLS peer as a service); `x-umw-connection-id` counts only from a trusted peer too.
 */
export function callerOf(ctx: Pick<CallContext, "headers" | "peer">, requestTenant: string, trustedPeers: ReadonlySet<string>): Caller & { readonly connectionId: string | undefined } {
  const trusted = ctx.peer === undefined || trustedPeers.has(ctx.peer);
  const principal = principalOf(ctx, trustedPeers);
  const tenant = principal?.kind === "user" ? principal.tenant : undefined;
  return {
    tenant: tenant ?? requestTenant,
    tenantFromToken: tenant !== undefined,
    principal: principal?.subject,
    user: principal?.kind === "user",
    expiresAt: principal?.expiresAt,
    peer: ctx.peer,
    headers: ctx.headers,
    connectionId: trusted ? ctx.headers[HEADERS.connectionId] : undefined,
  };
}
