import { test } from "node:test";
import assert from "node:assert/strict";
import { classifyPgError, isTransientPgError, pgErrorCodeOf } from "./pg-errors.js";

const pgError = (code: string, message = "x") => Object.assign(new Error(message), { code });

test("SQLSTATEs and driver errors map to one kind each", () => {
  const cases: [unknown, string][] = [
    [pgError("57P01", "terminating connection due to administrator command"), "connection"],
    [pgError("08006"), "connection"],
    [pgError("53300"), "connection"],
    [pgError("58030"), "connection"],
    [pgError("ECONNREFUSED"), "connection"],
    [new Error("Connection terminated unexpectedly"), "connection"],
    [pgError("25006"), "failover"],
    [pgError("57014"), "timeout"],
    [pgError("40001"), "conflict"],
    [pgError("40P01"), "conflict"],
    [pgError("55P03"), "conflict"],
    [pgError("22P05", "unsupported Unicode escape sequence"), "data"],
    [pgError("23505"), "data"],
    [pgError("54000"), "data"],
    [pgError("42P01", "relation does not exist"), "unknown"],
    [new Error("a bug"), "unknown"],
    [undefined, "unknown"],
  ];
  for (const [error, kind] of cases) assert.equal(classifyPgError(error), kind, String((error as Error | undefined)?.message ?? error));
});

test("transient means worth another try: not data, not unknown", () => {
  assert.equal(isTransientPgError(pgError("57014")), true);
  assert.equal(isTransientPgError(pgError("25006")), true);
  assert.equal(isTransientPgError(pgError("23505")), false);
  assert.equal(isTransientPgError(new Error("a bug")), false);
});

test("the code recorded of a failure: the SQLSTATE, else a Node error code, else nothing", () => {
  assert.equal(pgErrorCodeOf(Object.assign(new Error("x"), { code: "40001" })), "40001");
  assert.equal(pgErrorCodeOf(Object.assign(new Error("x"), { code: "ECONNREFUSED" })), "ECONNREFUSED");
  assert.equal(pgErrorCodeOf(Object.assign(new Error("x"), { code: 14 })), undefined);
  assert.equal(pgErrorCodeOf(new Error("x")), undefined);
});
