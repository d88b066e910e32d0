import { execFile } from "node:child_process";
import { appendFileSync, chownSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { migrate } from "../../runtime/migrate.js";
import { SERVICE_ROLES } from "../../runtime/pg-roles.js";
import { freePort } from "./ports.js";

const run = promisify(execFile);
const PGBIN = process.env.UMW_TEST_PGBIN ?? "/usr/lib/postgresql/15/bin";

/**
 * A Postgres server of one test's own, in a temporary folder on a free port: for tests that stop
 * or restart the database (the shared one on :15432 is never touched). The binaries refuse to run
 * as root, so as root they run as the `postgres` OS user (as scripts/infra.sh does).
 */
export interface PrivatePostgres {
  /** `postgres://umw@127.0.0.1:<port>/umw`, migrated. */
  readonly url: string;
  readonly port: number;
  /** `pg_ctl restart -m fast`: every session is ended (57P01), the server is back when it resolves. */
  restart(): Promise<void>;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** `pg_ctl stop -m immediate`: the server ends at once, as if killed (crash recovery at the next start). */
  kill(): Promise<void>;
  /** Stops the server (immediate) and removes its folder. */
  destroy(): Promise<void>;
}

export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const server = await postgresFolder("umw-pg-");
  await server.pgRun("initdb", ["-D", server.data, "-U", "umw", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]);
  const port = await freePort();
  server.writeConfig(join(server.data, "postgresql.auto.conf"), serverSettings(port, server.dir), false);
  await server.pgCtl("start");
  const base = `postgres://umw@127.0.0.1:${port}`;
  const admin = new pg.Client({ connectionString: `${base}/postgres` });
  await admin.connect();
  await admin.query("CREATE DATABASE umw");
  // The service roles (runtime/pg-roles.ts), as scripts/infra.sh creates them: services started
  // with UMW_PG_ROLE_PASSWORDS_DIR connect as them (trust auth here: the passwords are not checked).
  for (const role of Object.values(SERVICE_ROLES)) await admin.query(`CREATE ROLE ${role} LOGIN`);
  await admin.end();
  const url = `${base}/umw`;
  await migrate(url);
  return server.control(url, port);
}

/** The settings of a private server on `port` (its sockets in its own folder). */
export function serverSettings(port: number, dir: string): string[] {
  return [`port = ${port}`, "listen_addresses = '127.0.0.1'", `unix_socket_directories = '${dir}'`, "fsync = off", "max_connections = 200", "shared_buffers = 32MB"];
}

/** A temporary folder for one server, and the commands run on it (as `postgres` when root). */
export async function postgresFolder(prefix: string) {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const data = join(dir, "data");
  const log = join(dir, "server.log");
  const asRoot = process.getuid?.() === 0;
  const owner = asRoot ? await postgresIds() : undefined;
  if (owner) chownSync(dir, owner.uid, owner.gid);
  const pgRun = (bin: string, args: string[]) =>
    asRoot ? run("runuser", ["-u", "postgres", "--", join(PGBIN, bin), ...args], { cwd: "/" }) : run(join(PGBIN, bin), args);
  writeFileSync(log, "");
  if (owner) chownSync(log, owner.uid, owner.gid);
  const pgCtl = (...args: string[]) => pgRun("pg_ctl", ["-D", data, "-l", log, "-w", "-t", "30", ...args]);
  return {
    dir,
    data,
    pgRun,
    pgCtl,
    /** Writes (or appends to) a file of the data folder, owned by the server's user. */
    writeConfig(file: string, lines: readonly string[], append: boolean) {
      (append ? appendFileSync : writeFileSync)(file, lines.join("\n") + "\n");
      if (owner) chownSync(file, owner.uid, owner.gid);
    },
    control(url: string, port: number): PrivatePostgres {
      let destroyed = false;
      return {
        url,
        port,
        restart: async () => void (await pgCtl("restart", "-m", "fast")),
        stop: async () => void (await pgCtl("stop", "-m", "fast")),
        start: async () => void (await pgCtl("start")),
        kill: async () => void (await pgCtl("stop", "-m", "immediate")),
        async destroy() {
          if (destroyed) return;
          destroyed = true;
          await pgCtl("stop", "-m", "immediate").catch(() => undefined);
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  };
}

async function postgresIds(): Promise<{ uid: number; gid: number }> {
  const [uid, gid] = await Promise.all([run("id", ["-u", "postgres"]), run("id", ["-g", "postgres"])]);
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}
