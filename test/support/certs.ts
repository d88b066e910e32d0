import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createDevCertificates } from "../../runtime/certs.js";
import { loadIdentity, type MeshIdentity } from "../../runtime/tls.js";

export interface TestCerts {
  readonly dir: string;
  identity(name: string): MeshIdentity;
  remove(): void;
}

/** A throwaway CA and certificates for the given identities, in a temporary folder. */
export function testCerts(identities: readonly string[]): TestCerts {
  const dir = mkdtempSync(join(tmpdir(), "umw-certs-"));
  createDevCertificates({ dir, identities, days: 2 });
  return { dir, identity: (name) => loadIdentity(dir, name), remove: () => rmSync(dir, { recursive: true, force: true }) };
}
