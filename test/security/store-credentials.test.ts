// The stores refuse whoever lacks credentials, and each Postgres service role can do what its
// service needs and nothing more, on a migrated per-run database (grants from migrations/grants.sql,
// run by `umw migrate`). Runs against the stores of `source scripts/infra-env.sh`, which must be
// started with credentials (`scripts/infra.sh up` on a fresh machine; `scripts/infra.sh auth-on`
// for stores that predate them).
//
//   source scripts/infra-env.sh && node --import tsx --test test/security/store-credentials.test.ts
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { connect } from "node:net";
import { Redis } from "ioredis";
import kafkajs from "kafkajs";
import pg from "pg";
import { loadConfig } from "../../runtime/config.js";
import { serviceDatabaseUrl, SERVICE_ROLES, type DatabaseUser } from "../../runtime/pg-roles.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { infra } from "../support/env.js";

const CREDENTIALS_OFF = "the stores run without credentials: start them with `scripts/infra.sh up` (fresh) or switch them with `scripts/infra.sh auth-on`, then `source scripts/infra-env.sh`";

/** `err.code` of a failed statement ('42501' = insufficient_privilege), or 'ok'. */
async function attempt(client: pg.Client, sql: string, values: unknown[] = []): Promise<string> {
  try {
    await client.query(sql, values);
    return "ok";
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  }
}

describe("Postgres: one least-privilege role per service", () => {
  let db: TestDatabase;
  const clients = new Map<DatabaseUser, pg.Client>();

  before(async () => {
    assert.ok(infra.pgRolePasswordsDir, CREDENTIALS_OFF);
    db = await createTestDatabase({ replica: true });
    const config = loadConfig({ ...process.env, UMW_CONFIG: "" });
    for (const service of Object.keys(SERVICE_ROLES) as DatabaseUser[]) {
      const client = new pg.Client({ connectionString: serviceDatabaseUrl(config, db.url, service) });
      await client.connect();
      clients.set(service, client);
    }
    const owner = new pg.Client({ connectionString: db.url });
    await owner.connect();
    await owner.query("INSERT INTO umw_entities (tenant, type, id, data, version) VALUES ('t', 'doc', 'seed', '{}', 1)");
    await owner.end();
  });
  after(async () => {
    for (const client of clients.values()) await client.end().catch(() => undefined);
    await db?.drop();
  });

  const insertEntity = "INSERT INTO umw_entities (tenant, type, id, data, version) VALUES ('t', 'doc', $1, '{}', 1)";

  test("each service connects as its own role", async () => {
    for (const [service, client] of clients) {
      const { rows } = await client.query<{ user: string; superuser: string }>("SELECT current_user AS user, current_setting('is_superuser') AS superuser");
      assert.deepEqual(rows[0], { user: SERVICE_ROLES[service], superuser: "off" });
    }
  });

  test("the query role reads entities and cannot write anything, on the primary and on the replica", async () => {
    const query = clients.get("query")!;
    assert.equal(await attempt(query, "SELECT id FROM umw_entities"), "ok");
    assert.equal(await attempt(query, insertEntity, [randomUUID()]), "42501", "INSERT into entities: permission denied");
    assert.equal(await attempt(query, "UPDATE umw_entities SET version = 2"), "42501");
    assert.equal(await attempt(query, "DELETE FROM umw_entities"), "42501");
    assert.equal(await attempt(query, "SELECT * FROM umw_commands"), "42501", "commands are not the query service's");
    assert.equal(await attempt(query, "CREATE TABLE umw_x (a int)"), "42501", "no DDL in the schema");
    const config = loadConfig({ ...process.env, UMW_CONFIG: "" });
    const replica = new pg.Client({ connectionString: serviceDatabaseUrl(config, db.replicaUrl, "query") });
    await replica.connect();
    try {
      const { rows } = await replica.query<{ id: string }>("SELECT id FROM umw_entities");
      assert.deepEqual(rows.map((row) => row.id), ["seed"]);
      assert.equal(await attempt(replica, "SELECT * FROM umw_idempotency_keys"), "42501");
    } finally {
      await replica.end();
    }
  });

  test("only the processor writes entities; the command service writes commands, keys and the outbox; the relay only the outbox", async () => {
    assert.equal(await attempt(clients.get("processor")!, insertEntity, [randomUUID()]), "ok");
    for (const service of ["command", "relay", "realtime"] as const) {
      assert.equal(await attempt(clients.get(service)!, insertEntity, [randomUUID()]), "42501", `${service} INSERT into entities`);
    }
    const command = clients.get("command")!;
    const id = randomUUID();
    assert.equal(await attempt(command, "INSERT INTO umw_commands (id, tenant, principal, type, entity_id, action, state) VALUES ($1, 't', 'p', 'doc', 'e', '\\x00', 'accepted')", [id]), "ok");
    assert.equal(
      await attempt(command, "INSERT INTO umw_outbox (id, aggregatetype, aggregateid, type, topic, payload, headers) VALUES ($1, 'doc', 't/doc/e', 'x', 'x', '\\x00', '{}')", [id]),
      "ok",
    );
    assert.equal(await attempt(command, "UPDATE umw_commands SET state = 'applied'"), "42501", "the command service does not apply");
    assert.equal(await attempt(command, "UPDATE umw_outbox SET published_at = now()"), "42501", "nor publish");
    const relay = clients.get("relay")!;
    assert.equal(await attempt(relay, "UPDATE umw_outbox SET published_at = now() WHERE id = $1", [id]), "ok");
    assert.equal(await attempt(relay, "SELECT * FROM umw_commands"), "42501");
    assert.equal(await attempt(relay, "INSERT INTO umw_outbox (id, aggregatetype, aggregateid, type, topic, payload, headers) VALUES ($1, 'doc', 'x', 'x', 'x', '\\x00', '{}')", [randomUUID()]), "42501");
    assert.equal(await attempt(clients.get("processor")!, "UPDATE umw_commands SET state = 'applied' WHERE id = $1", [id]), "ok");
    assert.equal(await attempt(clients.get("processor")!, "DELETE FROM umw_idempotency_keys"), "42501");
    assert.equal(await attempt(clients.get("realtime")!, "SELECT count(*) FROM umw_commands"), "ok");
    assert.equal(await attempt(clients.get("realtime")!, "UPDATE umw_commands SET state = 'failed'"), "42501");
  });

  test("a wrong role password is refused", async () => {
    const url = new URL(db.url);
    url.username = SERVICE_ROLES.query;
    url.password = "not-the-password";
    const client = new pg.Client({ connectionString: url.toString() });
    await assert.rejects(client.connect(), (error: { code?: string }) => error.code === "28P01");
  });
});

/** One command over a fresh TCP connection; the first line of the answer. */
async function resp(url: URL, ...args: string[]): Promise<string> {
  const socket = connect(Number(url.port), url.hostname);
  try {
    socket.write(`*${args.length}\r\n${args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join("")}`);
    const [chunk] = (await once(socket, "data")) as [Buffer];
    return chunk.toString("utf8").split("\r\n")[0]!;
  } finally {
    socket.destroy();
  }
}

describe("Redis: the ACL user's password, or nothing", () => {
  test("with the URL's credentials PING answers; without them, or with a wrong password, it is refused", async () => {
    const url = new URL(infra.redisUrl);
    assert.ok(url.password, CREDENTIALS_OFF);
    const good = new Redis(infra.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    try {
      await good.connect();
      assert.equal(await good.ping(), "PONG");
    } finally {
      good.disconnect();
    }
    // Without credentials, in plain RESP: every command is refused, and the default user is off.
    assert.match(await resp(url, "PING"), /^-NOAUTH/);
    assert.match(await resp(url, "GET", "any-key"), /^-NOAUTH/);
    assert.match(await resp(url, "AUTH", "default", "anything"), /^-WRONGPASS/);
    assert.match(await resp(url, "AUTH", decodeURIComponent(url.username), "wrong-password"), /^-WRONGPASS/);
    // ioredis without the password gives up with NOAUTH.
    const anonymous = new Redis({ host: url.hostname, port: Number(url.port), lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    const errors: string[] = [];
    anonymous.on("error", (error: Error) => errors.push(error.message));
    await assert.rejects(anonymous.connect());
    anonymous.disconnect();
    assert.ok(errors.some((message) => message.startsWith("NOAUTH")), errors.join("; "));
  });
});

describe("Kafka: SASL/SCRAM or nothing", () => {
  const admin = (sasl: kafkajs.SASLOptions | undefined) =>
    new kafkajs.Kafka({ clientId: "umw-credentials-test", brokers: [...infra.kafkaBrokers], sasl, connectionTimeout: 2_000, retry: { retries: 0 }, logLevel: kafkajs.logLevel.NOTHING }).admin();

  test("with the settings' credentials it lists topics; without SASL, or with a wrong password, it is refused", { timeout: 60_000 }, async () => {
    assert.ok(infra.kafkaSasl, CREDENTIALS_OFF);
    const good = admin(infra.kafkaSasl);
    await good.connect();
    try {
      assert.ok(Array.isArray(await good.listTopics()));
    } finally {
      await good.disconnect();
    }
    const plaintext = admin(undefined);
    await assert.rejects(
      plaintext.connect().then(() => plaintext.listTopics()),
      (error: Error) => error instanceof kafkajs.KafkaJSError,
      "a client without SASL gets no answer",
    );
    await plaintext.disconnect().catch(() => undefined);
    const wrong = admin({ mechanism: "scram-sha-256", username: "umw", password: "wrong-password" });
    await assert.rejects(wrong.connect(), /SASL SCRAM SHA256 authentication failed/);
    await wrong.disconnect().catch(() => undefined);
  });
});
