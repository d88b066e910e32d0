import { test } from "node:test";
import assert from "node:assert/strict";
import { RpcError } from "./errors.js";
import { checkCallerTenant } from "./tenant-guard.js";

const edge = new Set(["edge"]);
const user = (tenant: string) => ({ "x-umw-principal": "alice", "x-umw-tenant": tenant });

test("tenant guard: a user from a trusted edge acts only in its token's tenant; services and untrusted assertions are not users", () => {
  checkCallerTenant({ peer: "edge", headers: user("acme") }, edge, "acme");
  assert.throws(
    () => checkCallerTenant({ peer: "edge", headers: user("acme") }, edge, "globex"),
    (error: unknown) => error instanceof RpcError && error.reason === "TENANT_MISMATCH" && error.code === 7,
  );
  // Asserted by a peer that may not assert: the caller is that peer, a service, not limited here.
  checkCallerTenant({ peer: "cli", headers: user("acme") }, edge, "globex");
  checkCallerTenant({ peer: "query", headers: {} }, edge, "globex");
});
