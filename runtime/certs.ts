import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/**
 * What a mesh identity does with its certificate: serves calls (serverAuth), makes them
 * (clientAuth), or both (two certificates, never one that does both).
 */
export type CertificateRole = "server" | "client" | "both";

export interface CertificateSpec {
  readonly name: string;
  readonly role: CertificateRole;
}

export interface CertsOptions {
  readonly dir: string;
  /** The identities to certify; a bare name is an identity that both serves and calls. */
  readonly identities: readonly (string | CertificateSpec)[];
  /** Days the certificates are valid. */
  readonly days?: number;
  /** Replace what is there. */
  readonly force?: boolean;
  /**
   * Also name localhost and 127.0.0.1 in server certificates (default true), for tools that dial a
   * loopback address and check the host name against the certificate (grpcurl without
   * -servername, clients built without an expected peer). Mesh clients do not need them: they
   * check the service name the certificate carries, whatever address they dialled.
   */
  readonly loopback?: boolean;
}

/**
 * The files of an identity in the certs folder: `<name>.crt`/`<name>.key` is its server certificate
 * when it serves, else its client certificate; an identity that does both also has
 * `<name>.client.crt`/`<name>.client.key`.
 */
export function certificateFiles(name: string, role: CertificateRole, usage: "server" | "client"): { cert: string; key: string } {
  const base = role === "both" && usage === "client" ? `${name}.client` : name;
  return { cert: `${base}.crt`, key: `${base}.key` };
}

/**
 * Creates a development CA and the certificates of each identity: a server certificate (EKU
 * serverAuth; SAN the identity's name, plus localhost and 127.0.0.1 unless `loopback: false`) and/or
 * a client certificate (EKU clientAuth; SAN the identity's name). Existing files are kept unless
 * `force`. Uses the openssl command line, which every Debian machine has.
 */
export function createDevCertificates({ dir, identities, days = 825, force = false, loopback = true }: CertsOptions): string[] {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const created: string[] = [];
  const ca = { key: join(dir, "ca.key"), cert: join(dir, "ca.crt") };
  if (force || !existsSync(ca.cert) || !existsSync(ca.key)) {
    openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", ca.key, "-out", ca.cert,
      "-days", String(days), "-subj", "/CN=umw dev CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    created.push("ca");
    force = true;
  }
  for (const identity of identities) {
    const { name, role } = typeof identity === "string" ? { name: identity, role: "both" as const } : identity;
    const usages: ("server" | "client")[] = role === "both" ? ["server", "client"] : [role];
    for (const usage of usages) {
      const files = certificateFiles(name, role, usage);
      const key = join(dir, files.key);
      const cert = join(dir, files.cert);
      if (!force && existsSync(key) && existsSync(cert)) continue;
      const names = usage === "server" && loopback ? [`DNS:${name}`, "DNS:localhost", "IP:127.0.0.1"] : [`DNS:${name}`];
      issue(dir, ca, { name, key, cert, days, names, eku: usage === "server" ? "serverAuth" : "clientAuth" });
      created.push(files.cert.replace(/\.crt$/, ""));
    }
  }
  return created;
}

function issue(
  dir: string,
  ca: { key: string; cert: string },
  { name, key, cert, days, names, eku }: { name: string; key: string; cert: string; days: number; names: string[]; eku: string },
): void {
  const csr = join(dir, `${name}.${eku}.csr`);
  const ext = join(dir, `${name}.${eku}.ext`);
  writeFileSync(ext, [
    `subjectAltName=${names.join(",")}`,
    "basicConstraints=critical,CA:FALSE",
    "keyUsage=critical,digitalSignature,keyEncipherment",
    `extendedKeyUsage=${eku}`,
  ].join("\n"));
  try {
    openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", csr, "-subj", `/CN=${name}`]);
    openssl(["x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial", "-out", cert, "-days", String(days), "-extfile", ext]);
  } finally {
    execFileSync("rm", ["-f", csr, ext]);
  }
}

function openssl(args: string[]): void {
  try {
    execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`openssl ${args[0]} failed: ${stderr || (error as Error).message}`);
  }
}
