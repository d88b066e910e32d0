import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { PGlite } from "@electric-sql/pglite";
import type { Logger } from "../../runtime/logger.js";
import { readMigrations } from "../../runtime/migrate.js";
import { openPglite } from "../../runtime/pglite.js";
import type { Database } from "../../runtime/sql.js";

/**
 * Where templates are kept: node_modules/.cache/umw of the installation (the usual place of tool
 * caches; `npm ci` clears it, the next start refills it), found from this file whether it runs
 * from the sources or from dist/.
 */
export const DEFAULT_TEMPLATE_DIR = join(installationRoot(), "node_modules", ".cache", "umw");

function installationRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (let dir = here; ; dir = dirname(dir)) {
    if (existsSync(join(dir, "node_modules"))) return dir;
    if (dirname(dir) === dir) return join(here, "..", "..");
  }
}

export interface EmbeddedDatabaseOptions {
  /** PGlite's folder; undefined = in memory. */
  readonly dataDir: string | undefined;
  readonly log: Logger;
  /** Folder of the template cache; null = no cache. */
  readonly templateDir?: string | null;
}

/**
 * Opens the embedded database, migrated. A fresh PGlite runs initdb in wasm, which is most of its
 * start (measured here on 2 busy cores: 15-25 s; from a dump: 2-5 s). So the in-memory database
 * starts from a dump of an empty migrated one ("template", keyed by the PGlite version and the
 * migrations), written by the first start. A new (missing or empty) data dir is seeded from the
 * template too, when there is one; an existing data dir is opened as it is. Any problem with the
 * cache falls back to initdb.
 */
export async function openEmbeddedDatabase(options: EmbeddedDatabaseOptions): Promise<Database & { readonly pglite: PGlite }> {
  const { dataDir, log } = options;
  const templateDir = options.templateDir === undefined ? DEFAULT_TEMPLATE_DIR : options.templateDir;
  const file = templateDir === null ? undefined : templateFile(templateDir, log);
  if (dataDir) {
    const template = file && isNewDataDir(dataDir) ? readTemplate(file) : undefined;
    if (template) {
      try {
        await seedDataDir(dataDir, template);
        log.info({ dataDir, template: file }, "embedded: new data dir made from the template (no initdb)");
      } catch (error) {
        log.warn({ err: error, dataDir, file }, "embedded: cannot seed the data dir from the template; running initdb in it");
      }
    }
    return openPglite(dataDir);
  }
  if (!file) return openPglite();
  const template = readTemplate(file);
  if (template) {
    try {
      return await openPglite(undefined, { loadDataDir: template });
    } catch (error) {
      log.warn({ err: error, file }, "embedded: the PGlite template cannot be loaded; removing it and starting from initdb");
      rmSync(file, { force: true });
    }
  }
  const db = await openPglite();
  try {
    const dump = Buffer.from(await (await db.pglite.dumpDataDir("gzip")).arrayBuffer());
    mkdirSync(templateDir!, { recursive: true });
    const partial = `${file}.${process.pid}.tmp`;
    writeFileSync(partial, dump);
    renameSync(partial, file);
    log.info({ file }, "embedded: saved an empty migrated database as a template; the next starts skip initdb");
  } catch (error) {
    log.debug({ err: error, dir: templateDir }, "embedded: cannot save the PGlite template (starts stay slower)");
  }
  return db;
}

/** The template's file in templateDir, or undefined when it cannot be keyed. */
function templateFile(templateDir: string, log: Logger): string | undefined {
  try {
    return join(templateDir, `pglite-${templateKey()}.tar.gz`);
  } catch (error) {
    log.debug({ err: error }, "embedded: no PGlite template (cannot key it)");
    return undefined;
  }
}

function readTemplate(file: string): Blob | undefined {
  try {
    return new Blob([new Uint8Array(readFileSync(file))]);
  } catch {
    return undefined; // no template yet
  }
}

function isNewDataDir(dataDir: string): boolean {
  try {
    return readdirSync(dataDir).length === 0;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "ENOENT";
  }
}

/**
 * Unpacks the template into a sibling folder, closes it cleanly and renames it into place: a crash
 * meanwhile leaves the data dir new (and a stray sibling), never half written.
 */
async function seedDataDir(dataDir: string, template: Blob): Promise<void> {
  const partial = `${dataDir.replace(/[\\/]+$/, "")}.seeding-${process.pid}`;
  rmSync(partial, { recursive: true, force: true });
  try {
    const seeded = await PGlite.create(partial, { loadDataDir: template });
    await seeded.close();
    rmSync(dataDir, { recursive: true, force: true }); // new: missing or empty
    mkdirSync(dirname(dataDir), { recursive: true });
    renameSync(partial, dataDir);
  } finally {
    rmSync(partial, { recursive: true, force: true });
  }
}

/** Changes with the PGlite version and with any migration, so a stale template is never used. */
function templateKey(): string {
  const hash = createHash("sha256").update(`pglite ${pgliteVersion()}\n`);
  for (const migration of readMigrations()) hash.update(`${migration.version} ${migration.name}\n${migration.sql}\n`);
  return hash.digest("hex").slice(0, 16);
}

/** The installed PGlite's version (its package.json is not exported: found from its entry point). */
function pgliteVersion(): string {
  let dir = dirname(createRequire(import.meta.url).resolve("@electric-sql/pglite"));
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { name?: string; version?: string };
      if (pkg.name === "@electric-sql/pglite" && pkg.version) return pkg.version;
    } catch {
      // not here: one level up
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error("cannot find the version of @electric-sql/pglite");
    dir = parent;
  }
}
