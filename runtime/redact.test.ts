// Pure logic: runtime/redact.ts and the logger built on it.
//
//   node --import tsx --test runtime/redact.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { ConfigError, loadConfig } from "./config.js";
import { createLogger } from "./logger.js";
import { redactError, redactText, redactUrl, registerSecret } from "./redact.js";

test("URL passwords are replaced, user and host kept, valid URL or not", () => {
  assert.equal(redactUrl("postgres://umw:s3cret-pw@db:5432/umw"), "postgres://umw:***@db:5432/umw");
  assert.equal(redactUrl("redis://:only-pw@cache:6379"), "redis://:***@cache:6379");
  assert.equal(redactUrl("redis://cache:6379"), "redis://cache:6379");
  assert.equal(redactText("failed: postgres://a:p%40ss@h/db and redis://u:zz-top@h2:1 then"), "failed: postgres://a:***@h/db and redis://u:***@h2:1 then");
  assert.equal(redactText("bad url mysql://root:hunter22@ and more"), "bad url mysql://root:***@ and more");
});

test("registered secrets are replaced anywhere, in errors too, without touching the original", () => {
  registerSecret("Plain-Secret-4711");
  assert.equal(redactText("the driver said Plain-Secret-4711 was wrong"), "the driver said *** was wrong");
  const error = Object.assign(new Error("auth failed for Plain-Secret-4711"), { code: "E1", password: "x", detail: { url: "postgres://u:p4ss@h/d" } });
  const copy = redactError(error);
  assert.equal(copy.message, "auth failed for ***");
  assert.ok(!copy.stack?.includes("Plain-Secret-4711"));
  assert.equal((copy as unknown as { password: string }).password, "***");
  assert.deepEqual((copy as unknown as { detail: unknown }).detail, { url: "postgres://u:***@h/d" });
  assert.equal(error.message, "auth failed for Plain-Secret-4711", "the original is unchanged");
  registerSecret("ab");
  assert.equal(redactText("abc"), "abc", "too short to search for");
});

test("config errors never print a secret setting's value", () => {
  const cases: Record<string, string> = {
    UMW_PG_URL: "mysql://umw:Pg-Secret-1111@h/db",
    UMW_PG_REPLICA_URL: "not a url Replica-Secret-2222",
    UMW_REDIS_URL: "http://u:Redis-Secret-3333@h",
  };
  assert.throws(
    () => loadConfig(cases),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      for (const secret of ["Pg-Secret-1111", "Replica-Secret-2222", "Redis-Secret-3333"]) assert.ok(!error.message.includes(secret), `${secret} in ${error.message}`);
      assert.match(error.message, /UMW_PG_URL="mysql:\/\/umw:\*\*\*@h\/db"/, "the rest of the URL stays for diagnosis");
      assert.match(error.message, /UMW_PG_REPLICA_URL="\*\*\*"/);
      return true;
    },
  );
});

test("the logger: credential fields, URLs in fields and messages, and error messages are redacted", () => {
  registerSecret("Log-Secret-9999");
  const lines: string[] = [];
  const sink = new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) });
  // rootLogger's logger (a process singleton on stdout) on a sink of our own.
  const log = createLogger("info", sink);
  log.info({ url: "postgres://umw:Log-Secret-9999@h/db", password: "p-value-1", nested: { sasl: { password: "x" } } }, "connecting");
  log.warn("redis at redis://umw:Log-Secret-9999@h:1 refused");
  log.error({ err: new Error("auth failed with Log-Secret-9999") }, "failed");
  log.child({ target: "redis://u:Log-Secret-9999@h" }).child({ again: "Log-Secret-9999" }).info("child");
  const text = lines.join("");
  assert.ok(!text.includes("Log-Secret-9999"), text);
  assert.ok(!text.includes("p-value-1"), text);
  assert.match(text, /postgres:\/\/umw:\*\*\*@h\/db/);
  assert.equal(lines.length, 4);
});
