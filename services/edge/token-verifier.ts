import { createLocalJWKSet, createRemoteJWKSet, errors, jwtVerify, type JSONWebKeySet, type JWTPayload, type JWTVerifyGetKey } from "jose";
import { Code, RpcError } from "../../runtime/errors.js";
import type { Principal } from "../../runtime/principal.js";
import { VerifiedTokens } from "./verified-tokens.js";

/** Which claims carry what (a dotted path reaches into nested objects). */
export interface ClaimNames {
  readonly subject: string;
  readonly tenant: string;
  readonly scopes: string;
  readonly roles: string;
}

export interface TokenVerifierOptions {
  /** Expected `iss`; also where `/.well-known/openid-configuration` is looked up. */
  readonly issuer: string;
  readonly audience: string;
  /** Allowed JWS algorithms (asymmetric only). */
  readonly algorithms: readonly string[];
  readonly clockSkewS: number;
  readonly claims: ClaimNames;
  /** The JWKS URL; default the discovery document's `jwks_uri`. */
  readonly jwksUrl?: string;
  /** The keys themselves (the dev issuer): no fetch at all. */
  readonly jwks?: JSONWebKeySet;
  /** How long a fetched JWKS is used before it is fetched again. */
  readonly jwksCacheMs?: number;
  /** Least time between two fetches caused by an unknown `kid` (jose's cooldown); default 30 s. */
  readonly jwksCooldownMs?: number;
  /** Verified tokens remembered; 0 = none. */
  readonly cacheEntries?: number;
  /** Bound of each discovery / JWKS fetch. */
  readonly fetchTimeoutMs?: number;
}

/**
 * Verifies bearer JWTs against an OIDC issuer's keys (jose): signature by a key of the issuer's
 * JWKS (fetched through discovery, cached, fetched again for an unknown `kid`, so rotated keys are
 * picked up), algorithm allow-list, `iss`, `aud`, `exp` / `nbf` within the skew. The principal
 * comes from the configured claims only. Failures are RpcErrors (UNAUTHENTICATED, or
 * UNAVAILABLE when the issuer cannot be reached) without the WWW-Authenticate header (authenticator.ts adds it).
 */
export class TokenVerifier {
  private keys: Promise<JWTVerifyGetKey> | undefined;
  private readonly verified: VerifiedTokens;

  constructor(private readonly options: TokenVerifierOptions) {
    this.verified = new VerifiedTokens(options.cacheEntries ?? 10_000);
  }

  async verify(token: string): Promise<Principal> {
    const known = this.verified.get(token);
    if (known) return known;
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, await this.keySet(), {
        issuer: this.options.issuer,
        audience: this.options.audience,
        algorithms: [...this.options.algorithms],
        clockTolerance: this.options.clockSkewS,
        requiredClaims: ["exp"],
      }));
    } catch (error) {
      throw verificationFailure(error);
    }
    const principal = this.principalOf(payload);
    this.verified.set(token, principal, principal.expiresAt! + this.options.clockSkewS * 1000);
    return principal;
  }

  private principalOf(payload: JWTPayload): Principal {
    const { claims } = this.options;
    const subject = claim(payload, claims.subject);
    const tenant = claim(payload, claims.tenant);
    if (typeof subject !== "string" || subject === "") throw claimMissing(claims.subject);
    if (typeof tenant !== "string" || tenant === "") throw claimMissing(claims.tenant);
    return { kind: "user", subject, tenant, scopes: words(claim(payload, claims.scopes)), roles: words(claim(payload, claims.roles)), expiresAt: payload.exp! * 1000 };
  }

  /** The key set, made once; a failed discovery is not kept, so the next request tries again. */
  private keySet(): Promise<JWTVerifyGetKey> {
    this.keys ??= this.makeKeySet().catch((error: unknown) => {
      this.keys = undefined;
      throw error;
    });
    return this.keys;
  }

  private async makeKeySet(): Promise<JWTVerifyGetKey> {
    const { jwks, jwksUrl, jwksCacheMs, jwksCooldownMs, fetchTimeoutMs = 5_000 } = this.options;
    if (jwks) return createLocalJWKSet(jwks);
    const url = jwksUrl ?? (await this.discoverJwksUri(fetchTimeoutMs));
    return createRemoteJWKSet(new URL(url), { cacheMaxAge: jwksCacheMs ?? 600_000, cooldownDuration: jwksCooldownMs ?? 30_000, timeoutDuration: fetchTimeoutMs });
  }

  private async discoverJwksUri(timeoutMs: number): Promise<string> {
    const url = `${this.options.issuer.replace(/\/$/, "")}/.well-known/openid-configuration`;
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const document = (await response.json()) as { jwks_uri?: unknown };
      if (typeof document.jwks_uri !== "string") throw new Error("no jwks_uri");
      return document.jwks_uri;
    } catch (error) {
      throw issuerUnavailable(`cannot read the issuer's discovery document ${url}: ${(error as Error).message}`);
    }
  }
}

function claim(payload: JWTPayload, path: string): unknown {
  if (path in payload) return payload[path];
  let value: unknown = payload;
  for (const part of path.split(".")) value = value !== null && typeof value === "object" ? (value as Record<string, unknown>)[part] : undefined;
  return value;
}

function words(value: unknown): string[] {
  if (typeof value === "string") return value.split(/\s+/).filter(Boolean);
  if (Array.isArray(value)) return value.filter((item): item is string => typeof item === "string" && item !== "");
  return [];
}

function claimMissing(name: string): RpcError {
  return new RpcError(Code.UNAUTHENTICATED, "TOKEN_CLAIM_MISSING", `the token has no ${name} claim`, { claim: name });
}

function issuerUnavailable(message: string): RpcError {
  return new RpcError(Code.UNAVAILABLE, "ISSUER_UNAVAILABLE", message, {}, { "retry-after": "1" });
}

function verificationFailure(error: unknown): RpcError {
  if (error instanceof RpcError) return error;
  if (error instanceof errors.JWTExpired) return new RpcError(Code.UNAUTHENTICATED, "TOKEN_EXPIRED", "the token has expired");
  // A JWKS answer that is not 200 is a plain JOSEError; a network failure is no JOSEError at all.
  if (error instanceof errors.JWKSTimeout || error instanceof errors.JWKSInvalid || (error instanceof Error && (!(error instanceof errors.JOSEError) || error.constructor === errors.JOSEError))) {
    return issuerUnavailable(`cannot fetch the issuer's keys: ${error.message}`);
  }
  if (error instanceof errors.JWTClaimValidationFailed) return new RpcError(Code.UNAUTHENTICATED, "TOKEN_INVALID", `the token's ${error.claim} claim is not accepted`, { claim: error.claim });
  if (error instanceof errors.JWKSNoMatchingKey) return new RpcError(Code.UNAUTHENTICATED, "TOKEN_INVALID", "the token is not signed by a key of the issuer");
  if (error instanceof errors.JOSEAlgNotAllowed) return new RpcError(Code.UNAUTHENTICATED, "TOKEN_INVALID", "the token's signing algorithm is not allowed");
  if (error instanceof errors.JWSSignatureVerificationFailed) return new RpcError(Code.UNAUTHENTICATED, "TOKEN_INVALID", "the token's signature does not verify");
  return new RpcError(Code.UNAUTHENTICATED, "TOKEN_INVALID", "the token is not a valid JWT");
}
