import { Code, RpcError } from "../../runtime/errors.js";
import type { Principal } from "../../runtime/principal.js";
import type { TokenVerifier } from "./token-verifier.js";

/**
 * Who may call through the edge: `verifier` checks bearer tokens; `none` lets every call in
 * without a principal (an explicit choice, UMW_AUTH_MODE=none, warned about at every start).
 */
export type EdgeAuth = { readonly mode: "none" } | { readonly mode: "bearer"; readonly verifier: TokenVerifier; readonly realm: string };

/**
 * The caller of one request from its `Authorization` header: a verified Principal, undefined with
 * auth `none`, or an RpcError: 401 UNAUTHENTICATED with an RFC 6750 `WWW-Authenticate`, or 503
 * when the issuer's keys cannot be fetched.
 */
export async function authenticate(auth: EdgeAuth, authorization: string | null | undefined): Promise<Principal | undefined> {
  if (auth.mode === "none") return undefined;
  const challenge = (error?: string, description?: string) =>
    `Bearer realm="${auth.realm}"${error ? `, error="${error}", error_description="${description!.replace(/["\\]/g, "'")}"` : ""}`;
  const match = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(authorization ?? "");
  if (!authorization) {
    // RFC 6750 3.1: a request without credentials gets the challenge without an error code.
    throw new RpcError(Code.UNAUTHENTICATED, "TOKEN_MISSING", "this call needs a bearer token (Authorization: Bearer <token>)", {}, { "www-authenticate": challenge() });
  }
  if (!match) {
    throw new RpcError(Code.UNAUTHENTICATED, "TOKEN_INVALID", "the Authorization header is not a bearer token", {}, { "www-authenticate": challenge("invalid_request", "expected Authorization: Bearer <token>") });
  }
  try {
    return await auth.verifier.verify(match[1]!);
  } catch (error) {
    if (!(error instanceof RpcError) || error.code !== Code.UNAUTHENTICATED) throw error;
    return Promise.reject(RpcError.fromWire(error.code, error.reason, error.message, error.metadata, { ...error.headers, "www-authenticate": challenge("invalid_token", error.message) }));
  }
}

/** A request naming another tenant than the token's is refused before it is forwarded. */
export function checkTenant(principal: Principal | undefined, requested: unknown): void {
  if (principal?.tenant === undefined || typeof requested !== "string" || requested === "" || requested === principal.tenant) return;
  throw new RpcError(Code.PERMISSION_DENIED, "TENANT_MISMATCH", `the token grants tenant ${JSON.stringify(principal.tenant)}, not ${JSON.stringify(requested)}`, {
    tenant: requested,
    callerTenant: principal.tenant,
  });
}
