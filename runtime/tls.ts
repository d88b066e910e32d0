import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ChannelCredentials, ServerCredentials, type ServerUnaryCall } from "@grpc/grpc-js";
import type { PeerCertificate } from "node:tls";

/**
 * PEM material of one mesh identity: the CA every peer must chain to, its own pair (`<name>.crt`:
 * its server certificate if it serves, else its client certificate), and the pair it calls with
 * (`<name>.client.crt` when it has one, else the same). See runtime/certs.ts for the layout.
 */
export interface MeshIdentity {
  readonly name: string;
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly client: { readonly cert: Buffer; readonly key: Buffer };
}

export function loadIdentity(certsDir: string, name: string): MeshIdentity {
  const read = (file: string) => {
    try {
      return readFileSync(join(certsDir, file));
    } catch {
      throw new Error(`mTLS: cannot read ${join(certsDir, file)}; create the dev certificates with \`umw certs\``);
    }
  };
  const own = { cert: read(`${name}.crt`), key: read(`${name}.key`) };
  const separateClient = existsSync(join(certsDir, `${name}.client.crt`));
  const client = separateClient ? { cert: read(`${name}.client.crt`), key: read(`${name}.client.key`) } : own;
  return { name, ca: read("ca.crt"), ...own, client };
}

/** Server side: a client certificate signed by the mesh CA is required and verified. */
export function serverCredentials(identity: MeshIdentity): ServerCredentials {
  return ServerCredentials.createSsl(identity.ca, [{ cert_chain: identity.cert, private_key: identity.key }], true);
}

/**
 * Client credentials of a mesh identity (its client certificate). With `expectedPeer`, the server's
 * certificate must name that mesh identity (a DNS SAN) instead of the host dialled: any server
 * certificate of the mesh CA matches a loopback host in a dev setup, and in production the address
 * may be an IP or a DNS name the certificate does not list; the service's name is what counts.
 * Without it, the standard host name check applies (tools, tests).
 */
export function clientCredentials(identity: MeshIdentity, expectedPeer?: string): ChannelCredentials {
  const { cert, key } = identity.client;
  const checkServerIdentity = expectedPeer ? peerNameCheck(expectedPeer) : undefined;
  const credentials = checkServerIdentity
    ? ChannelCredentials.createSsl(identity.ca, key, cert, { checkServerIdentity })
    : ChannelCredentials.createSsl(identity.ca, key, cert);
  clientTlsByCredentials.set(credentials, { ca: identity.ca, key, cert, checkServerIdentity });
  return credentials;
}

/**
 * The TLS material behind mesh client credentials, for a client that dials HTTP/2 itself (the
 * edge's lean unary transport, runtime/http2-unary-transport.ts) with the same identity and the
 * same check of the server's name as grpc-js would.
 */
export interface ClientTls {
  readonly ca: Buffer;
  readonly key: Buffer;
  readonly cert: Buffer;
  /** Set when the server's certificate must name a mesh identity (clientCredentials' `expectedPeer`); else the standard host name check. */
  readonly checkServerIdentity?: (host: string, cert: PeerCertificate) => Error | undefined;
}

const clientTlsByCredentials = new WeakMap<ChannelCredentials, ClientTls>();

/** The TLS material of credentials made by `clientCredentials`; undefined for any other credentials. */
export function clientTlsOf(credentials: ChannelCredentials): ClientTls | undefined {
  return clientTlsByCredentials.get(credentials);
}

function peerNameCheck(expectedPeer: string): (host: string, cert: PeerCertificate) => Error | undefined {
  return (_host, peerCert) => {
    const names = dnsNames(peerCert);
    return names.includes(expectedPeer) ? undefined : new Error(`the server's certificate names ${names.join(", ") || "nothing"}, not ${expectedPeer}`);
  };
}

function dnsNames(cert: PeerCertificate): string[] {
  return (cert.subjectaltname ?? "")
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry.startsWith("DNS:"))
    .map((entry) => entry.slice(4));
}

/** Mesh names of the verified peers of open mTLS connections (HTTP/2 sessions): a connection's certificate is read once. */
const connectionPeers = new WeakMap<object, string>();

/**
 * The peer's mesh name: the first DNS SAN of its certificate, else its CN. grpc-js's
 * getAuthContext() turns the peer certificate into a JavaScript object on every call (a tenth of a
 * QueryService cache hit's CPU); the name is kept per connection instead, when grpc-js lets us
 * reach it (a connection's peer certificate does not change).
 */
export function peerIdentity(call: Pick<ServerUnaryCall<unknown, unknown>, "getAuthContext">): string | undefined {
  const connection = connectionOf(call);
  if (connection) {
    const known = connectionPeers.get(connection);
    if (known !== undefined) return known;
  }
  const identity = certificateIdentity(call);
  // Only an authorized TLS peer has a certificate identity (getAuthContext checks).
  if (connection && identity !== undefined) connectionPeers.set(connection, identity);
  return identity;
}

/**
 * The HTTP/2 session under a grpc-js server call: the call wraps grpc-js's intercepting calls
 * (`call`, `nextCall`), the innermost of which holds the stream. Undefined when the shape is not
 * that (another grpc-js version, a test double).
 */
function connectionOf(call: object): object | undefined {
  let current = call as { call?: object; nextCall?: object; stream?: { session?: object } } | undefined;
  for (let depth = 0; current && depth < 8; depth++) {
    if (current.stream) return current.stream.session;
    current = (current.call ?? current.nextCall) as typeof current;
  }
  return undefined;
}

function certificateIdentity(call: Pick<ServerUnaryCall<unknown, unknown>, "getAuthContext">): string | undefined {
  const cert = call.getAuthContext?.().sslPeerCertificate as PeerCertificate | undefined;
  if (!cert?.subject) return undefined;
  const dns = dnsNames(cert)[0];
  const cn = cert.subject.CN;
  return dns ?? (Array.isArray(cn) ? cn[0] : cn);
}
