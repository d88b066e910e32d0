import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ChannelCredentials, ServerCredentials, type ServerUnaryCall } from "@grpc/grpc-js";
import { checkServerIdentity, type PeerCertificate } from "node:tls";

/** PEM material of one mesh identity: the CA every peer must chain to, and this identity's pair. */
export interface MeshIdentity {
  readonly name: string;
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
}

export function loadIdentity(certsDir: string, name: string): MeshIdentity {
  const read = (file: string) => {
    try {
      return readFileSync(join(certsDir, file));
    } catch {
      throw new Error(`mTLS: cannot read ${join(certsDir, file)}; create the dev certificates with \`umw certs\``);
    }
  };
  return { name, ca: read("ca.crt"), cert: read(`${name}.crt`), key: read(`${name}.key`) };
}

/** Server side: a client certificate signed by the mesh CA is required and verified. */
export function serverCredentials(identity: MeshIdentity): ServerCredentials {
  return ServerCredentials.createSsl(identity.ca, [{ cert_chain: identity.cert, private_key: identity.key }], true);
}

/**
 * Client credentials of a mesh identity. With `expectedPeer`, the server's certificate must also
 * name that mesh identity (a DNS SAN): every mesh certificate carries localhost/127.0.0.1, so the
 * host name alone would let any mesh member answer for any service.
 */
export function clientCredentials(identity: MeshIdentity, expectedPeer?: string): ChannelCredentials {
  if (!expectedPeer) return ChannelCredentials.createSsl(identity.ca, identity.key, identity.cert);
  return ChannelCredentials.createSsl(identity.ca, identity.key, identity.cert, {
    checkServerIdentity(host, cert) {
      const standard = checkServerIdentity(host, cert);
      if (standard) return standard;
      const names = dnsNames(cert);
      return names.includes(expectedPeer) ? undefined : new Error(`the server's certificate names ${names.join(", ") || "nothing"}, not ${expectedPeer}`);
    },
  });
}

function dnsNames(cert: PeerCertificate): string[] {
  return (cert.subjectaltname ?? "")
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry.startsWith("DNS:"))
    .map((entry) => entry.slice(4));
}

/** The peer's mesh name: the first DNS SAN of its certificate, else its CN. */
export function peerIdentity(call: Pick<ServerUnaryCall<unknown, unknown>, "getAuthContext">): string | undefined {
  const cert = call.getAuthContext?.().sslPeerCertificate as PeerCertificate | undefined;
  if (!cert?.subject) return undefined;
  const dns = dnsNames(cert)[0];
  const cn = cert.subject.CN;
  return dns ?? (Array.isArray(cn) ? cn[0] : cn);
}
