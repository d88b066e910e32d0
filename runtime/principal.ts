import type { CallContext } from "./call-context.js";

/**
 * Who a call acts for. A user principal comes from a bearer token verified at an edge (the Node
 * edge or Envoy) and reaches the mesh as the `x-umw-*` metadata below, which counts only when the
 * mTLS peer is a trusted edge identity (`UMW_TRUSTED_PRINCIPAL_PEERS`). A service principal is the
 * mTLS peer itself, calling on its own behalf.
 */
export interface Principal {
  readonly kind: "user" | "service";
  /** Token subject (`sub`, or the configured claim), or the peer's mesh identity for a service. */
  readonly subject: string;
  /** The tenant the token grants; undefined for a service principal. */
  readonly tenant: string | undefined;
  readonly scopes: readonly string[];
  readonly roles: readonly string[];
  /** Token expiry, epoch milliseconds; undefined for a service principal. */
  readonly expiresAt: number | undefined;
}

/** Metadata an edge sets from a verified token. Edges drop any client-sent `x-umw-*` first. */
export const PRINCIPAL_HEADERS = {
  subject: "x-umw-principal",
  tenant: "x-umw-tenant",
  scopes: "x-umw-scopes",
  roles: "x-umw-roles",
  expiresAt: "x-umw-token-expires-at",
} as const;

/** The metadata that carries a user principal across the mesh (space-separated lists). */
export function principalHeaders(principal: Principal): Record<string, string> {
  const headers: Record<string, string> = { [PRINCIPAL_HEADERS.subject]: principal.subject };
  if (principal.tenant !== undefined) headers[PRINCIPAL_HEADERS.tenant] = principal.tenant;
  if (principal.scopes.length) headers[PRINCIPAL_HEADERS.scopes] = principal.scopes.join(" ");
  if (principal.roles.length) headers[PRINCIPAL_HEADERS.roles] = principal.roles.join(" ");
  if (principal.expiresAt !== undefined) headers[PRINCIPAL_HEADERS.expiresAt] = String(principal.expiresAt);
  return headers;
}

const words = (value: string | undefined): string[] => (value ? value.split(/[\s,]+/).filter(Boolean) : []);

/**
 * The principal of an incoming mesh call: the asserted user when the peer is a trusted edge (or
 * in-process, without mTLS) and it asserts one; otherwise the peer as a service; undefined when
 * there is neither (an insecure port and no assertion).
 */
export function principalOf(ctx: Pick<CallContext, "headers" | "peer">, trustedPeers: ReadonlySet<string>): Principal | undefined {
  // One call asks several times (the policy interceptor, the handler's tenant guard, idempotency):
  // read the headers once per call.
  const known = readPrincipals.get(ctx.headers);
  if (known && known.peer === ctx.peer && known.trustedPeers === trustedPeers) return known.principal;
  const principal = readPrincipal(ctx, trustedPeers);
  readPrincipals.set(ctx.headers, { peer: ctx.peer, trustedPeers, principal });
  return principal;
}

const readPrincipals = new WeakMap<object, { readonly peer: string | undefined; readonly trustedPeers: ReadonlySet<string>; readonly principal: Principal | undefined }>();

function readPrincipal(ctx: Pick<CallContext, "headers" | "peer">, trustedPeers: ReadonlySet<string>): Principal | undefined {
  const trusted = ctx.peer === undefined || trustedPeers.has(ctx.peer);
  const subject = ctx.headers[PRINCIPAL_HEADERS.subject]?.trim();
  if (trusted && subject) {
    const expiresAt = Number(ctx.headers[PRINCIPAL_HEADERS.expiresAt]);
    return {
      kind: "user",
      subject,
      tenant: ctx.headers[PRINCIPAL_HEADERS.tenant]?.trim() || undefined,
      scopes: words(ctx.headers[PRINCIPAL_HEADERS.scopes]),
      roles: words(ctx.headers[PRINCIPAL_HEADERS.roles]),
      expiresAt: Number.isFinite(expiresAt) && expiresAt > 0 ? expiresAt : undefined,
    };
  }
  if (ctx.peer === undefined) return undefined;
  return { kind: "service", subject: ctx.peer, tenant: undefined, scopes: [], roles: [], expiresAt: undefined };
}
