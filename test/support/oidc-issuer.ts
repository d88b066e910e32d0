import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, importJWK, SignJWT, type JWK, type JWTPayload } from "jose";
import Provider from "oidc-provider";

export const OIDC_AUDIENCE = "https://umw.test/api";
export const OIDC_SCOPES = "entities:read entities:write commands:read realtime:subscribe";

/** One client of the provider: client_credentials, its tokens carry `tenant`. */
export interface OidcClient {
  readonly id: string;
  readonly secret: string;
  readonly tenant: string;
}

/**
 * A real OpenID Provider (oidc-provider) on loopback: discovery, JWKS, and the client_credentials
 * grant issuing JWT access tokens for the resource OIDC_AUDIENCE with a `tenant` claim
 * (extraTokenClaims). `rotate()` replaces the signing key (the old one stays published unless
 * dropped), by swapping in a provider with the new key set on the same port.
 */
export class OidcIssuer {
  private provider!: Provider;
  private keys: JWK[] = [];
  /** The tenant of each user account (userToken); a client's tokens carry the client's. */
  private readonly userTenants = new Map<string, string>();

  private constructor(
    private readonly server: Server,
    readonly issuer: string,
    readonly clients: readonly OidcClient[],
  ) {}

  static async start(clients: readonly OidcClient[]): Promise<OidcIssuer> {
    let handler: OidcIssuer | undefined;
    const server = createServer((req, res) => handler!.provider.callback()(req, res));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    handler = new OidcIssuer(server, issuer, clients);
    await handler.rotate();
    return handler;
  }

  /** The kid tokens are signed with now. */
  get currentKid(): string {
    return this.keys[0]!.kid!;
  }

  /** A new signing key (ES256); the previous keys stay in the JWKS unless `dropOld`. */
  async rotate(options: { dropOld?: boolean } = {}): Promise<void> {
    const { privateKey } = await generateKeyPair("ES256", { extractable: true });
    const jwk: JWK = { ...(await exportJWK(privateKey)), alg: "ES256", use: "sig", kid: `k${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}` };
    this.keys = options.dropOld ? [jwk] : [jwk, ...this.keys];
    const tenants = new Map(this.clients.map((client) => [client.id, client.tenant]));
    this.provider = new Provider(this.issuer, {
      clients: this.clients.map((client) => ({ client_id: client.id, client_secret: client.secret, grant_types: ["client_credentials"], redirect_uris: [], response_types: [], id_token_signed_response_alg: "ES256" })),
      jwks: { keys: this.keys },
      features: {
        devInteractions: { enabled: false },
        clientCredentials: { enabled: true },
        resourceIndicators: {
          enabled: true,
          defaultResource: () => OIDC_AUDIENCE,
          useGrantedResource: () => true,
          getResourceServerInfo: () => ({ scope: OIDC_SCOPES, audience: OIDC_AUDIENCE, accessTokenTTL: 600, accessTokenFormat: "jwt", jwt: { sign: { alg: "ES256" } } }),
        },
      },
      extraTokenClaims: (_ctx: unknown, token: { clientId?: string; accountId?: string }) => ({
        tenant: (token.accountId && this.userTenants.get(token.accountId)) || tenants.get(token.clientId ?? ""),
      }),
    });
  }

  /** An access token of the client_credentials grant. */
  async clientToken(client: OidcClient, scope = OIDC_SCOPES): Promise<string> {
    const response = await fetch(`${this.issuer}/token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", authorization: `Basic ${Buffer.from(`${client.id}:${client.secret}`).toString("base64")}` },
      body: new URLSearchParams({ grant_type: "client_credentials", scope, resource: OIDC_AUDIENCE }),
    });
    const body = (await response.json()) as { access_token?: string; error?: string; error_description?: string };
    if (!response.ok || !body.access_token) throw new Error(`token endpoint: ${response.status} ${body.error}: ${body.error_description}`);
    return body.access_token;
  }

  /**
   * A user's access token, issued by the provider itself (its AccessToken model, its signing key,
   * its JWT format for OIDC_AUDIENCE) as at the end of an authorization-code login of `accountId`
   * through `client`: `sub` is the user, `client_id` the app, `tenant` the user's. The login page
   * and the code exchange are skipped (no browser here); what an edge verifies is the same token.
   */
  async userToken(client: OidcClient, accountId: string, tenant: string, scope = OIDC_SCOPES): Promise<string> {
    type ProviderModels = {
      Client: { find(id: string): Promise<unknown> };
      ResourceServer: new (identifier: string, info: object) => unknown;
      AccessToken: new (fields: object) => { save(): Promise<string> };
    };
    const provider = this.provider as unknown as ProviderModels;
    const resourceServer = new provider.ResourceServer(OIDC_AUDIENCE, { scope: OIDC_SCOPES, audience: OIDC_AUDIENCE, accessTokenTTL: 600, accessTokenFormat: "jwt", jwt: { sign: { alg: "ES256" } } });
    this.userTenants.set(accountId, tenant);
    const token = new provider.AccessToken({ accountId, client: await provider.Client.find(client.id), scope, resourceServer, gty: "authorization_code" });
    return token.save();
  }

  /** A token signed with the provider's current key but with claims of the test's choosing (expired, other aud or iss). */
  async forge(claims: JWTPayload): Promise<string> {
    const key = this.keys[0]!;
    return new SignJWT({ iss: this.issuer, aud: OIDC_AUDIENCE, sub: "forged", tenant: "acme", iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 600, ...claims })
      .setProtectedHeader({ alg: "ES256", kid: key.kid!, typ: "at+jwt" })
      .sign(await importJWK(key, "ES256"));
  }

  stop(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** An unsigned token (`alg: none`) with the given claims. */
export function unsignedToken(claims: JWTPayload): string {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${part({ alg: "none", typ: "JWT" })}.${part(claims)}.`;
}
