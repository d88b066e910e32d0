import { test } from "node:test";
import assert from "node:assert/strict";
import { RpcError } from "./errors.js";
import { checkTenantOfPrincipal } from "./tenant-guard.js";

const edge = new Set(["edge"]);
const user = (tenant?: string) => ({ "x-umw-principal": "alice", ...(tenant ? { "x-umw-tenant": tenant } : {}) });
const crossTenant = (error: unknown) => error instanceof RpcError && error.reason === "CROSS_TENANT_ACCESS" && error.code === 7;

test("tenant guard: a user from a trusted edge acts only in its token's tenant; services and untrusted assertions are not users", () => {
  checkTenantOfPrincipal({ peer: "edge", headers: user("acme") }, "acme", edge);
  assert.throws(() => checkTenantOfPrincipal({ peer: "edge", headers: user("acme") }, "globex", edge), crossTenant);
  // A user whose token names no tenant acts in none.
  assert.throws(() => checkTenantOfPrincipal({ peer: "edge", headers: user() }, "acme", edge), crossTenant);
  // Asserted by a peer that may not assert: the caller is that peer, a service, not limited here.
  checkTenantOfPrincipal({ peer: "cli", headers: user("acme") }, "globex", edge);
  checkTenantOfPrincipal({ peer: "query", headers: {} }, "globex", edge);
});
