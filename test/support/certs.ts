import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createDevCertificates, type CertificateSpec } from "../../runtime/certs.js";
import { loadIdentity, type MeshIdentity } from "../../runtime/tls.js";
import { MESH_IDENTITIES } from "../../services/registry.js";

export interface TestCerts {
  readonly dir: string;
  identity(name: string): MeshIdentity;
  remove(): void;
}

/**
 * A throwaway CA and certificates for the given identities, in a temporary folder. A bare name gets
 * the certificates the mesh gives that identity (services/registry.ts: the cli and the edge only a
 * client certificate, the workers only a server one); a name the mesh does not know gets both.
 */
export function testCerts(identities: readonly (string | CertificateSpec)[], options: { loopback?: boolean } = {}): TestCerts {
  const dir = mkdtempSync(join(tmpdir(), "umw-certs-"));
  const specs = identities.map((identity) =>
    typeof identity === "string" ? (MESH_IDENTITIES.find((known) => known.name === identity) ?? { name: identity, role: "both" as const }) : identity,
  );
  createDevCertificates({ dir, identities: specs, days: 2, ...options });
  return { dir, identity: (name) => loadIdentity(dir, name), remove: () => rmSync(dir, { recursive: true, force: true }) };
}
