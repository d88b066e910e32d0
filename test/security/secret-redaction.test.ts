// No credential in any output: a distinctive secret is planted in every credential-bearing setting
// (store URLs, the Kafka SASL password, `*_FILE` secrets, the Postgres role password files), with
// invalid values (config validation) and with valid ones that the real stores refuse or that point
// at a closed port; `umw serve`, `umw migrate` and `umw dlq` run as real child processes at debug
// level, and all of their stdout and stderr is searched for the secrets: no hit. Each run must also
// show the failure it was set up for, so a child that died early cannot pass.
//
//   source scripts/infra-env.sh && node --import tsx --test test/security/secret-redaction.test.ts
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SERVICE_ROLES } from "../../runtime/pg-roles.js";
import { infra, runId } from "../support/env.js";
import { freePort, freeServicePorts } from "../support/ports.js";

const UMW = "bin/umw.mjs";
const run = runId();
const planted: string[] = [];
/** A secret no output could contain by chance (hex, like the generated ones, plus a marker). */
function secret(name: string): string {
  const value = `Zq${run}${name}x${planted.length}Kp`;
  planted.push(value);
  return value;
}

const dir = mkdtempSync(join(tmpdir(), "umw-redaction-"));
function file(name: string, content: string): string {
  const path = join(dir, name);
  writeFileSync(path, content + "\n", { mode: 0o600 });
  return path;
}

interface Outcome {
  readonly code: number | null;
  readonly output: string;
}

/** Runs umw with exactly these settings (nothing inherited from the test's UMW_* environment). */
async function umw(args: string[], env: Record<string, string>, timeoutMs = 60_000): Promise<Outcome> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("UMW_")));
  const child = spawn(process.execPath, [UMW, ...args], { env: { ...base, UMW_CONFIG: "", ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
  const code = await new Promise<number | null>((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("exit", (exitCode) => {
      clearTimeout(timer);
      resolve(exitCode);
    });
  });
  return { code, output };
}

function assertClean(outcome: Outcome, what: string): void {
  const hits = planted.filter((value) => outcome.output.includes(value));
  assert.deepEqual(hits, [], `${what}: a planted secret was printed:\n${outcome.output.slice(0, 4_000)}`);
}

/** host:port of a URL, to point a wrong password at a real store. */
function hostOf(url: string): string {
  return new URL(url).host;
}

describe("credentials never reach stdout or stderr", () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("invalid values: config validation names the setting but not the secret", async () => {
    const outcome = await umw(["serve", "query"], {
      UMW_PG_URL: `mysql://umw:${secret("pg")}@db:5432/umw`,
      UMW_PG_REPLICA_URL: `postgres//umw:${secret("replica")}@db/umw`,
      UMW_REDIS_URL: `http://umw:${secret("redis")}@cache:6379`,
      UMW_KAFKA_SASL_MECHANISM: "bogus",
      UMW_KAFKA_SASL_PASSWORD_FILE: file("kafka-invalid", secret("kafka")),
    });
    assert.equal(outcome.code, 1, outcome.output);
    assert.match(outcome.output, /invalid configuration/);
    assert.match(outcome.output, /UMW_PG_URL="mysql:\/\/umw:\*\*\*@db:5432\/umw"/);
    assert.match(outcome.output, /UMW_PG_REPLICA_URL="\*\*\*"/);
    assert.match(outcome.output, /UMW_KAFKA_SASL_MECHANISM/);
    assertClean(outcome, "invalid values");
  });

  test("a secret from a *_FILE that is invalid, and a SASL mechanism without a user", async () => {
    const fromFile = await umw(["migrate"], { UMW_PG_URL_FILE: file("pg-url", `mysql://umw:${secret("pgfile")}@db/umw`) });
    assert.equal(fromFile.code, 1, fromFile.output);
    assert.match(fromFile.output, /UMW_PG_URL_FILE=.*must be a postgres/);
    assertClean(fromFile, "UMW_PG_URL_FILE");
    const noUser = await umw(["dlq", "list"], { UMW_KAFKA_SASL_MECHANISM: "scram-sha-256", UMW_KAFKA_SASL_PASSWORD: secret("sasl") });
    assert.equal(noUser.code, 1, noUser.output);
    assert.match(noUser.output, /needs UMW_KAFKA_SASL_USERNAME/);
    assertClean(noUser, "SASL without a user");
  });

  test("valid values the real stores refuse, or that point at a closed port: umw serve at debug level", { timeout: 120_000 }, async () => {
    const closed = await freePort();
    const ports = Object.fromEntries(Object.entries(await freeServicePorts()).map(([name, port]) => [name, String(port)]));
    const common = {
      ...ports,
      UMW_LOG_LEVEL: "debug",
      UMW_TOPIC_PREFIX: `t${run}.`,
      UMW_CERTS_DIR: join(dir, "certs"),
      UMW_PG_REPLICA_URL: `postgres://umw:${secret("replica")}@127.0.0.1:${closed}/umw`,
      UMW_REDIS_URL: `redis://umw:${secret("redis")}@${hostOf(infra.redisUrl)}`,
      UMW_KAFKA_BROKERS: infra.kafkaBrokers.join(","),
      UMW_KAFKA_SASL_MECHANISM: "scram-sha-256",
      UMW_KAFKA_SASL_USERNAME: "umw",
      UMW_KAFKA_SASL_PASSWORD_FILE: file("kafka-password", secret("kafka")),
    };
    const roles = join(dir, "roles");
    mkdirSync(roles);
    for (const role of Object.values(SERVICE_ROLES)) file(join("roles", role), secret(role));
    const [shared, perRole, migrate, dlq] = await Promise.all([
      // The owner's URL with a wrong password, on the real primary.
      umw(["serve", "command", "relay", "processor", "query", "cache-updater"], { ...common, UMW_PG_URL: `postgres://umw:${secret("pg")}@${hostOf(infra.pgUrl)}/umw` }),
      // Per-service roles whose password files hold wrong passwords.
      umw(["serve", "command", "query"], {
        ...common,
        UMW_QUERY_PORT: String(await freePort()),
        UMW_COMMAND_PORT: String(await freePort()),
        UMW_METRICS_PORT: String(await freePort()),
        UMW_PG_URL: `postgres://umw:${secret("owner")}@${hostOf(infra.pgUrl)}/umw`,
        UMW_PG_ROLE_PASSWORDS_DIR: roles,
      }),
      umw(["migrate"], { UMW_PG_URL: `postgres://umw:${secret("migrate")}@${hostOf(infra.pgUrl)}/umw` }),
      // The real brokers with a wrong SASL password (from a *_FILE).
      umw(["dlq", "list"], common),
    ]);
    assert.notEqual(shared.code, 0, shared.output);
    assert.match(shared.output, /cannot reach Postgres primary at postgres:\/\/umw:\*\*\*@/);
    assertClean(shared, "umw serve (owner URL)");
    assert.notEqual(perRole.code, 0, perRole.output);
    assert.match(perRole.output, /umw_command:\*\*\*@/, "the command service connected as its role");
    assertClean(perRole, "umw serve (service roles)");
    assert.equal(migrate.code, 1, migrate.output);
    assert.match(migrate.output, /password authentication failed/);
    assertClean(migrate, "umw migrate");
    assert.equal(dlq.code, 1, dlq.output);
    assert.match(dlq.output, /cannot reach Kafka/);
    assertClean(dlq, "umw dlq list");
  });
});
