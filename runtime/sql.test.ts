import { test } from "node:test";
import assert from "node:assert/strict";
import { RpcError, Code } from "./errors.js";
import { rootLogger } from "./logger.js";
import { connectPostgres } from "./sql.js";

test("a Postgres that never answers: retried until the bound, then UNAVAILABLE POSTGRES_UNREACHABLE without the password", async () => {
  const started = Date.now();
  await assert.rejects(
    connectPostgres({ url: "postgres://umw:s3cret@127.0.0.1:1/umw", role: "primary", log: rootLogger("silent"), connectTimeoutMs: 800 }),
    (error: unknown) => {
      assert.ok(error instanceof RpcError);
      assert.equal(error.code, Code.UNAVAILABLE);
      assert.equal(error.reason, "POSTGRES_UNREACHABLE");
      assert.doesNotMatch(error.message, /s3cret/);
      return true;
    },
  );
  // Retried for most of the bound: the retry helper stops when its next wait would end past it.
  const took = Date.now() - started;
  assert.ok(took >= 300 && took < 5_000, `gave up after ${took} ms`);
});
