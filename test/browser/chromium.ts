import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type BrowserContext } from "playwright-core";

/** Debian's chromium, as `scripts/infra.sh browser` (and `up`) installs it. */
export const CHROMIUM_BIN = "/usr/bin/chromium";

const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

export interface TrustingChromium {
  readonly context: BrowserContext;
  close(): Promise<void>;
}

/**
 * Headless Chromium with a fresh profile that trusts `caFile` (and nothing else beyond the system's
 * roots): the CA goes into the NSS database under the throwaway HOME, where Chromium on Linux reads
 * locally trusted roots. No certificate error is ignored.
 */
export async function launchChromium(caFile: string): Promise<TrustingChromium> {
  if (!existsSync(CHROMIUM_BIN)) throw new Error(`no Chromium at ${CHROMIUM_BIN}: run \`scripts/infra.sh browser\` (or up)`);
  const home = mkdtempSync(join(tmpdir(), "umw-chromium-"));
  const nssdb = join(home, ".pki", "nssdb");
  mkdirSync(nssdb, { recursive: true });
  try {
    execFileSync("certutil", ["-d", `sql:${nssdb}`, "-N", "--empty-password"], { stdio: "pipe" });
    execFileSync("certutil", ["-d", `sql:${nssdb}`, "-A", "-t", "C,,", "-n", "umw dev CA", "-i", caFile], { stdio: "pipe" });
  } catch (error) {
    rmSync(home, { recursive: true, force: true });
    throw new Error(`certutil could not trust ${caFile} (libnss3-tools; scripts/infra.sh browser): ${(error as { stderr?: Buffer }).stderr?.toString() ?? error}`);
  }
  const context = await chromium.launchPersistentContext(join(home, "profile"), {
    executablePath: CHROMIUM_BIN,
    headless: true,
    args: ARGS,
    env: { ...process.env, HOME: home },
    viewport: { width: 1000, height: 900 },
  });
  return {
    context,
    async close() {
      await context.close().catch(() => undefined);
      rmSync(home, { recursive: true, force: true });
    },
  };
}
