import { test } from "node:test";
import assert from "node:assert/strict";
import { processReadiness } from "./readiness.js";
import { isConnectionError } from "./sql.js";

test("a dependency reported by several adapters is ready only while all of them say so", () => {
  const name = `postgres test-${Math.random()}`;
  const a = processReadiness.reporter("dependency", name);
  const b = processReadiness.reporter("dependency", name);
  a.ready();
  b.ready();
  assert.equal(processReadiness.snapshot().dependencies[name]?.state, "READY");
  b.notReady("terminating connection due to administrator command");
  assert.deepEqual(
    { state: processReadiness.snapshot().dependencies[name]?.state, detail: processReadiness.snapshot().dependencies[name]?.detail },
    { state: "NOT_READY", detail: "terminating connection due to administrator command" },
  );
  b.remove();
  assert.equal(processReadiness.snapshot().dependencies[name]?.state, "READY");
  a.remove();
  assert.equal(processReadiness.snapshot().dependencies[name], undefined);
});

test("services and dependencies are reported apart", () => {
  const service = processReadiness.reporter("service", "edge-test");
  service.notReady("starting");
  const snapshot = processReadiness.snapshot();
  assert.equal(snapshot.services["edge-test"]?.state, "NOT_READY");
  assert.equal(snapshot.dependencies["edge-test"], undefined);
  service.remove();
});

test("connection errors are told from statement errors", () => {
  const sqlError = (code: string, message = "x") => Object.assign(new Error(message), { code });
  assert.ok(isConnectionError(sqlError("57P01", "terminating connection due to administrator command")));
  assert.ok(isConnectionError(sqlError("08006")));
  assert.ok(isConnectionError(sqlError("ECONNREFUSED")));
  assert.ok(isConnectionError(new Error("Connection terminated unexpectedly")));
  assert.ok(isConnectionError(new Error("Client has encountered a connection error and is not queryable")));
  assert.ok(!isConnectionError(sqlError("23505", "duplicate key value violates unique constraint")));
  assert.ok(!isConnectionError(sqlError("22P02")));
  assert.ok(!isConnectionError(new Error("syntax error")));
});
