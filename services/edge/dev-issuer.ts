import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { exportJWK, generateKeyPair, importJWK, SignJWT, type JSONWebKeySet, type JWK } from "jose";

/** The dev issuer's signing algorithm. */
export const DEV_ALGORITHM = "ES256";
const KEY_FILE = "signing-key.jwk.json";

/**
 * The built-in issuer of `UMW_AUTH_MODE=dev` (the zero-setup demo): one ES256 key kept in a folder
 * (made on first use, readable by its owner only), its JWKS and discovery document served by the
 * Node edge, and `umw token` signing with the same key. Not for production: whoever can read the
 * folder can mint tokens for any tenant.
 */
export class DevIssuer {
  private constructor(
    readonly issuer: string,
    private readonly privateJwk: JWK,
    readonly publicJwk: JWK,
  ) {}

  /** The key in `dir`, made when there is none yet. */
  static async open(dir: string, issuer: string): Promise<DevIssuer> {
    const path = join(dir, KEY_FILE);
    let privateJwk: JWK;
    try {
      privateJwk = JSON.parse(readFileSync(path, "utf8")) as JWK;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw new Error(`dev issuer: cannot read ${path}: ${(error as Error).message}`);
      const { privateKey } = await generateKeyPair(DEV_ALGORITHM, { extractable: true });
      privateJwk = { ...(await exportJWK(privateKey)), alg: DEV_ALGORITHM, use: "sig", kid: `dev-${Date.now().toString(36)}` };
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      try {
        writeFileSync(path, JSON.stringify(privateJwk), { mode: 0o600, flag: "wx" });
      } catch (raced) {
        // Another process made it first: use that one.
        if ((raced as NodeJS.ErrnoException).code !== "EEXIST") throw raced;
        privateJwk = JSON.parse(readFileSync(path, "utf8")) as JWK;
      }
    }
    const { d: _d, ...publicJwk } = privateJwk;
    return new DevIssuer(issuer.replace(/\/$/, ""), privateJwk, publicJwk);
  }

  get jwks(): JSONWebKeySet {
    return { keys: [this.publicJwk] };
  }

  /** The documents the edge serves under /.well-known/ (OIDC discovery and the JWKS). */
  documents(): Record<string, unknown> {
    return {
      [DISCOVERY_PATH]: { issuer: this.issuer, jwks_uri: `${this.issuer}${JWKS_PATH}`, id_token_signing_alg_values_supported: [DEV_ALGORITHM], response_types_supported: ["token"], subject_types_supported: ["public"] },
      [JWKS_PATH]: this.jwks,
    };
  }

  /** A signed access token. */
  async token(claims: { subject: string; audience: string; ttlS: number; extra: Record<string, unknown> }): Promise<string> {
    const key = await importJWK(this.privateJwk, DEV_ALGORITHM);
    return new SignJWT(claims.extra)
      .setProtectedHeader({ alg: DEV_ALGORITHM, kid: this.privateJwk.kid!, typ: "at+jwt" })
      .setIssuer(this.issuer)
      .setAudience(claims.audience)
      .setSubject(claims.subject)
      .setIssuedAt()
      .setExpirationTime(Math.floor(Date.now() / 1000) + claims.ttlS)
      .sign(key);
  }
}

export const DISCOVERY_PATH = "/.well-known/openid-configuration";
export const JWKS_PATH = "/.well-known/jwks.json";
