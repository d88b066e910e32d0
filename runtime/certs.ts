import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface CertsOptions {
  readonly dir: string;
  /** One certificate per identity (mesh services and clients such as the edge). */
  readonly identities: readonly string[];
  /** Days the certificates are valid. */
  readonly days?: number;
  /** Replace what is there. */
  readonly force?: boolean;
}

/**
 * Creates a development CA and one certificate per identity, usable as both server and client
 * (SAN: the identity's name, localhost, 127.0.0.1). Existing files are kept unless `force`.
 * Uses the openssl command line, which every Debian machine has.
 */
export function createDevCertificates({ dir, identities, days = 825, force = false }: CertsOptions): string[] {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const created: string[] = [];
  const ca = { key: join(dir, "ca.key"), cert: join(dir, "ca.crt") };
  if (force || !existsSync(ca.cert) || !existsSync(ca.key)) {
    openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", ca.key, "-out", ca.cert,
      "-days", String(days), "-subj", "/CN=umw dev CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    created.push("ca");
    force = true;
  }
  for (const name of identities) {
    const key = join(dir, `${name}.key`);
    const cert = join(dir, `${name}.crt`);
    if (!force && existsSync(key) && existsSync(cert)) continue;
    const csr = join(dir, `${name}.csr`);
    const ext = join(dir, `${name}.ext`);
    writeFileSync(ext, [
      `subjectAltName=DNS:${name},DNS:localhost,IP:127.0.0.1`,
      "basicConstraints=critical,CA:FALSE",
      "keyUsage=critical,digitalSignature,keyEncipherment",
      "extendedKeyUsage=serverAuth,clientAuth",
    ].join("\n"));
    openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", csr, "-subj", `/CN=${name}`]);
    openssl(["x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial", "-out", cert, "-days", String(days), "-extfile", ext]);
    execFileSync("rm", ["-f", csr, ext]);
    created.push(name);
  }
  return created;
}

function openssl(args: string[]): void {
  try {
    execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`openssl ${args[0]} failed: ${stderr || (error as Error).message}`);
  }
}
