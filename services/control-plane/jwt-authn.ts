import { create, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { anyPack, DurationSchema, type Any } from "@bufbuild/protobuf/wkt";
import { ClusterSchema, Cluster_DiscoveryType, Cluster_LbPolicy, type Cluster } from "../../gen/envoy/config/cluster/v3/cluster_pb.js";
import { JwtAuthenticationSchema } from "../../gen/envoy/extensions/filters/http/jwt_authn/v3/config_pb.js";
import { LuaSchema } from "../../gen/envoy/extensions/filters/http/lua/v3/lua_pb.js";
import { SubjectAltNameMatcher_SanType } from "../../gen/envoy/extensions/transport_sockets/tls/v3/common_pb.js";
import { UpstreamTlsContextSchema } from "../../gen/envoy/extensions/transport_sockets/tls/v3/tls_pb.js";
import { ConfigError, type Config } from "../../runtime/config.js";
import type { Logger } from "../../runtime/logger.js";
import { PRINCIPAL_HEADERS } from "../../runtime/principal.js";
import { devIssuerUrl } from "../edge/auth-config.js";
import { DevIssuer } from "../edge/dev-issuer.js";
import { authRefusal, luaRefusal } from "./auth-refusals.js";
import { CALLER_PROTOCOL_NAMESPACE } from "./ext-authz-filter.js";
import { statusJson } from "./rest-conventions.js";

/** Envoy's authentication: the same issuer, audience and claims as the Node edge (UMW_AUTH_*). */
export interface EnvoyAuthOptions {
  readonly issuer: string;
  readonly audience: string;
  /** The issuer's JWKS: fetched from `uri` through the `umw-issuer` cluster, or inline (the dev issuer's keys). */
  readonly jwks: { readonly uri: string } | { readonly inline: string };
  readonly clockSkewS: number;
  /** How long Envoy keeps a fetched JWKS (an unknown kid does not refetch sooner in Envoy). */
  readonly jwksCacheS: number;
  readonly claims: { readonly subject: string; readonly tenant: string; readonly scopes: string; readonly roles: string };
  readonly realm: string;
}

export const ISSUER_CLUSTER = "umw-issuer";
/** The CA bundle an https issuer's certificate is verified with (Debian's, in the Envoy image too). */
const SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt";
const PROVIDER = "umw";
const METADATA_KEY = "jwt_payload";

const pack = <D extends DescMessage>(schema: D, init: MessageInitShape<D>): Any => anyPack(schema, create(schema, init) as MessageShape<D>);
const seconds = (value: number) => create(DurationSchema, { seconds: BigInt(value) });
const lua = (name: string, code: string) => ({ name, configType: { case: "typedConfig" as const, value: pack(LuaSchema, { defaultSourceCode: { specifier: { case: "inlineString", value: code } } }) } });

/**
 * First in the chain: removes every client-sent `x-umw-*` header before anything reads it (the
 * principal's metadata is set below from the verified token only), notes the caller's protocol, and
 * on the way out turns jwt_authn's refusals (401, 403 for a wrong audience, plain text; or bare
 * grpc-status 16 for gRPC) into UNAUTHENTICATED with an ErrorInfo reason in the caller's protocol:
 * REST 401 with google.rpc.Status JSON, a Connect error (unary 401, streaming an end-stream frame),
 * gRPC-web trailers, gRPC trailers with grpc-status-details-bin; always with an RFC 6750 challenge.
 */
export function stripClientPrincipalFilter(realm = "umw") {
  const refusals = {
    missing: authRefusal("TOKEN_MISSING", "this call needs a bearer token (Authorization: Bearer <token>)"),
    expired: authRefusal("TOKEN_EXPIRED", "the token has expired"),
    invalid: authRefusal("TOKEN_INVALID", "the bearer token is not valid"),
  };
  return lua(
    "umw.strip_client_principal",
    `
local REFUSALS = {missing = ${luaRefusal(refusals.missing)}, expired = ${luaRefusal(refusals.expired)}, invalid = ${luaRefusal(refusals.invalid)}}

local function protocol_of(headers)
  local kind = headers:get("content-type") or ""
  if string.find(kind, "application/grpc-web", 1, true) == 1 then return "grpc_web" end
  if string.find(kind, "application/grpc", 1, true) == 1 then return "grpc" end
  if string.find(kind, "application/connect+", 1, true) == 1 then return "connect_stream" end
  if headers:get("connect-protocol-version") ~= nil then return "connect" end
  return "rest"
end

function envoy_on_request(request_handle)
  local names = {}
  for key, _ in pairs(request_handle:headers()) do
    if string.sub(string.lower(key), 1, 6) == "x-umw-" then names[#names + 1] = key end
  end
  for _, key in ipairs(names) do request_handle:headers():remove(key) end
  local headers = request_handle:headers()
  request_handle:streamInfo():dynamicMetadata():set(${luaString(CALLER_PROTOCOL_NAMESPACE)}, "protocol", protocol_of(headers))
  request_handle:streamInfo():dynamicMetadata():set(${luaString(CALLER_PROTOCOL_NAMESPACE)}, "content_type", headers:get("content-type") or "")
end

function envoy_on_response(response_handle)
  local headers = response_handle:headers()
  local status = headers:get(":status")
  local challenge = headers:get("www-authenticate")
  if challenge == nil or string.find(challenge, "Bearer", 1, true) ~= 1 then return end
  local kind = headers:get("content-type") or ""
  local grpc_status = headers:get("grpc-status")
  -- jwt_authn's refusals: plain text 401 (403 for a wrong audience), or for gRPC a bare grpc-status.
  local grpc_reply = string.find(kind, "application/grpc", 1, true) == 1 and (grpc_status == "16" or grpc_status == "7") and headers:get("grpc-status-details-bin") == nil
  local http_reply = (status == "401" or status == "403") and string.find(kind, "json", 1, true) == nil and string.find(kind, "grpc", 1, true) == nil
  if not grpc_reply and not http_reply then return end
  local missing = string.find(challenge, "error=", 1, true) == nil
  local noted = response_handle:streamInfo():dynamicMetadata():get(${luaString(CALLER_PROTOCOL_NAMESPACE)}) or {}
  local protocol = noted["protocol"] or "rest"
  if missing then
    headers:replace("www-authenticate", ${luaString(`Bearer realm="${realm}"`)})
  else
    headers:replace("www-authenticate", ${luaString(`Bearer realm="${realm}", error="invalid_token", error_description="the bearer token is expired or not valid"`)})
  end
  headers:replace("cache-control", "no-store")
  if grpc_reply then
    -- Headers only (trailers-only): jwt_authn's grpc-message says what was wrong.
    local refusal = REFUSALS.invalid
    if missing then refusal = REFUSALS.missing
    elseif string.find(headers:get("grpc-message") or "", "expired", 1, true) then refusal = REFUSALS.expired end
    headers:replace("grpc-status", "16")
    headers:replace("grpc-message", refusal.grpc_message)
    headers:replace("grpc-status-details-bin", refusal.grpc_details)
    return
  end
  -- Headers are changed before the body is read: once body() is called they are on their way.
  if protocol == "grpc_web" then
    headers:replace(":status", "200")
    headers:replace("content-type", "application/grpc-web+proto")
  elseif protocol == "connect_stream" then
    headers:replace(":status", "200")
    headers:replace("content-type", noted["content_type"] or "application/connect+proto")
  else
    if protocol == "grpc" then protocol = "rest" end
    headers:replace(":status", "401")
    headers:replace("content-type", "application/json")
  end
  local text = response_handle:body():getBytes(0, response_handle:body():length())
  local refusal = REFUSALS.invalid
  if missing then refusal = REFUSALS.missing
  elseif string.find(text, "expired", 1, true) then refusal = REFUSALS.expired end
  response_handle:body():setBytes(refusal[protocol])
end
`,
  );
}

/** jwt_authn (every path but /healthz needs a valid token), then the principal's headers from its claims. */
export function jwtAuthnFilters(auth: EnvoyAuthOptions) {
  const jwksSource =
    "uri" in auth.jwks
      ? {
          case: "remoteJwks" as const,
          value: {
            httpUri: { uri: auth.jwks.uri, httpUpstreamType: { case: "cluster" as const, value: ISSUER_CLUSTER }, timeout: seconds(5) },
            cacheDuration: seconds(auth.jwksCacheS),
            // Fetched when the listener starts, refetched on expiry, retried after a failure.
            asyncFetch: { failedRefetchDuration: seconds(1) },
            retryPolicy: { numRetries: 3 },
          },
        }
      : { case: "localJwks" as const, value: { specifier: { case: "inlineString" as const, value: auth.jwks.inline } } };
  return [
    {
      name: "envoy.filters.http.jwt_authn",
      configType: {
        case: "typedConfig" as const,
        value: pack(JwtAuthenticationSchema, {
          providers: {
            [PROVIDER]: {
              issuer: auth.issuer,
              audiences: [auth.audience],
              requireExpiration: true,
              jwksSourceSpecifier: jwksSource,
              forward: false,
              payloadInMetadata: METADATA_KEY,
              clockSkewSeconds: auth.clockSkewS,
            },
          },
          rules: [
            { match: { pathSpecifier: { case: "path", value: "/healthz" } } },
            { match: { pathSpecifier: { case: "prefix", value: "/" } }, requirementType: { case: "requires", value: { requiresType: { case: "providerName", value: PROVIDER } } } },
          ],
          bypassCorsPreflight: true,
        }),
      },
    },
    lua("umw.principal_headers", principalLua(auth)),
  ];
}

/** Sets the principal's metadata (runtime/principal.ts) from the verified payload; a REST path of another tenant is 403. */
function principalLua(auth: EnvoyAuthOptions): string {
  const claimMissing = (claim: string) => statusJson(16, "TOKEN_CLAIM_MISSING", `the token has no ${claim} claim`, { claim });
  return `
local function claim(payload, path)
  if payload[path] ~= nil then return payload[path] end
  local value = payload
  for part in string.gmatch(path, "[^.]+") do
    if type(value) ~= "table" then return nil end
    value = value[part]
  end
  return value
end

local function words(value)
  if type(value) == "string" then return (string.gsub(value, "^%s+", "")) end
  if type(value) == "table" then
    local out = {}
    for _, item in ipairs(value) do if type(item) == "string" then out[#out + 1] = item end end
    return table.concat(out, " ")
  end
  return ""
end

local function refuse(request_handle, status, body)
  request_handle:respond({[":status"] = status, ["content-type"] = "application/json", ["cache-control"] = "no-store", ["www-authenticate"] = ${luaString(`Bearer realm="${auth.realm}", error="invalid_token"`)}}, body)
end

function envoy_on_request(request_handle)
  local metadata = request_handle:streamInfo():dynamicMetadata():get("envoy.filters.http.jwt_authn")
  local payload = metadata and metadata[${luaString(METADATA_KEY)}]
  if payload == nil then return end
  local subject = claim(payload, ${luaString(auth.claims.subject)})
  local tenant = claim(payload, ${luaString(auth.claims.tenant)})
  if type(subject) ~= "string" or subject == "" then return refuse(request_handle, "401", ${luaString(claimMissing(auth.claims.subject))}) end
  if type(tenant) ~= "string" or tenant == "" then return refuse(request_handle, "401", ${luaString(claimMissing(auth.claims.tenant))}) end
  local headers = request_handle:headers()
  local path_tenant = string.match(headers:get(":path") or "", "^/v1/tenants/([^/?]+)")
  if path_tenant ~= nil and path_tenant ~= tenant then
    local body = string.format(${luaString(statusJson(7, "TENANT_MISMATCH", "the token grants another tenant", { tenant: "%s", callerTenant: "%s" }).replace(/%(?!s)/g, "%%"))}, path_tenant, tenant)
    request_handle:respond({[":status"] = "403", ["content-type"] = "application/json", ["cache-control"] = "no-store"}, body)
    return
  end
  -- Every principal header is the token's or absent, whatever reached this filter (the strip filter
  -- runs first; this does not depend on it: a client's x-umw-roles must never survive an empty claim).
  local function set(name, value)
    if value ~= nil and value ~= "" then headers:replace(name, value) else headers:remove(name) end
  end
  set(${luaString(PRINCIPAL_HEADERS.subject)}, subject)
  set(${luaString(PRINCIPAL_HEADERS.tenant)}, tenant)
  set(${luaString(PRINCIPAL_HEADERS.scopes)}, words(claim(payload, ${luaString(auth.claims.scopes)})))
  set(${luaString(PRINCIPAL_HEADERS.roles)}, words(claim(payload, ${luaString(auth.claims.roles)})))
  local exp = tonumber(payload["exp"])
  -- Epoch milliseconds, as the Node edge sends them (runtime/principal.ts).
  set(${luaString(PRINCIPAL_HEADERS.expiresAt)}, exp and string.format("%d", exp * 1000))
end
`;
}

/** The cluster jwt_authn fetches the JWKS through (the JWKS URL's host, TLS with SNI for https); none for inline keys. */
export function issuerClusters(auth: EnvoyAuthOptions | undefined): Cluster[] {
  if (auth === undefined || !("uri" in auth.jwks)) return [];
  const url = new URL(auth.jwks.uri);
  const https = url.protocol === "https:";
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const port = Number(url.port || (https ? 443 : 80));
  return [create(ClusterSchema, {
    name: ISSUER_CLUSTER,
    connectTimeout: seconds(2),
    lbPolicy: Cluster_LbPolicy.ROUND_ROBIN,
    clusterDiscoveryType: { case: "type", value: Cluster_DiscoveryType.STRICT_DNS },
    loadAssignment: {
      clusterName: ISSUER_CLUSTER,
      endpoints: [{ lbEndpoints: [{ hostIdentifier: { case: "endpoint", value: { address: { address: { case: "socketAddress", value: { address: host, portSpecifier: { case: "portValue", value: port } } } } } } }] }],
    },
    ...(https && {
      transportSocket: {
        name: "envoy.transport_sockets.tls",
        configType: {
          case: "typedConfig" as const,
          value: pack(UpstreamTlsContextSchema, {
            sni: host,
            commonTlsContext: {
              validationContextType: {
                case: "validationContext",
                value: {
                  trustedCa: { specifier: { case: "filename", value: SYSTEM_CA_BUNDLE } },
                  matchTypedSubjectAltNames: [{ sanType: SubjectAltNameMatcher_SanType.DNS, matcher: { matchPattern: { case: "exact", value: host } } }],
                },
              },
            },
          }),
        },
      },
    }),
  })];
}

/** A Lua string literal. */
function luaString(value: string): string {
  return `"${value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`;
}

/**
 * Envoy's authentication from the settings: `oidc` fetches the JWKS from UMW_AUTH_JWKS_URL or the
 * issuer's discovery document (looked up once, here); `dev` inlines the dev issuer's public key;
 * `none` is undefined (and warned about).
 */
export async function envoyAuthFromConfig(config: Config, log: Logger): Promise<EnvoyAuthOptions | undefined> {
  const common = {
    audience: config.authAudience,
    clockSkewS: config.authClockSkewS,
    jwksCacheS: config.authJwksCacheS,
    claims: { subject: config.authSubjectClaim, tenant: config.authTenantClaim, scopes: config.authScopeClaim, roles: config.authRolesClaim },
    realm: config.authRealm,
  };
  switch (config.authMode) {
    case "none":
      log.warn("UMW_AUTH_MODE=none: Envoy lets every caller in without authentication");
      return undefined;
    case "dev": {
      const issuer = await DevIssuer.open(config.authDevKeysDir, devIssuerUrl(config));
      return { ...common, issuer: issuer.issuer, jwks: { inline: JSON.stringify(issuer.jwks) } };
    }
    case "oidc": {
      if (!config.authIssuer) throw new ConfigError("invalid configuration: UMW_AUTH_MODE=oidc needs UMW_AUTH_ISSUER");
      return { ...common, issuer: config.authIssuer, jwks: { uri: config.authJwksUrl ?? (await discoverJwksUri(config.authIssuer)) } };
    }
  }
}

async function discoverJwksUri(issuer: string): Promise<string> {
  const url = `${issuer.replace(/\/$/, "")}/.well-known/openid-configuration`;
  const response = await fetch(url, { signal: AbortSignal.timeout(10_000) }).catch((error: unknown) => {
    throw new Error(`cannot read the issuer's discovery document ${url}: ${(error as Error).message} (or set UMW_AUTH_JWKS_URL)`);
  });
  const document = (await response.json().catch(() => ({}))) as { jwks_uri?: unknown };
  if (!response.ok || typeof document.jwks_uri !== "string") throw new Error(`the issuer's discovery document ${url} names no jwks_uri (HTTP ${response.status})`);
  return document.jwks_uri;
}
