import { test } from "node:test";
import assert from "node:assert/strict";
import { AuthzPolicy, type PolicyInput } from "./authz-policy.js";

const alice = { kind: "user", subject: "alice", tenant: "acme", scopes: ["entities:read"], roles: [] } as const;
const read = (tenant: string, principal: PolicyInput["principal"] = alice): PolicyInput => ({ method: "umw.v1.QueryService/GetEntity", tenants: [tenant], principal });

test("authz policy: remembered decisions are the policy's own, per input document", async () => {
  const policy = await AuthzPolicy.load();
  // Alternate inputs, each asked several times: a remembered decision never answers another input.
  for (let round = 0; round < 3; round++) {
    assert.deepEqual(policy.decide(read("acme")), { allow: true });
    assert.deepEqual(policy.decide(read("globex")), { allow: false, reason: "CROSS_TENANT_ACCESS" });
    assert.deepEqual(policy.decide(read("acme", { ...alice, scopes: ["commands:read"] })), { allow: false, reason: "MISSING_SCOPE" });
    assert.deepEqual(policy.decide(read("acme", { ...alice, tenant: "globex" })), { allow: false, reason: "CROSS_TENANT_ACCESS" });
  }
  // Past the bound (oldest dropped), decisions are still right.
  for (let i = 0; i < 5_000; i++) policy.decide(read("acme", { ...alice, subject: `user-${i}` }));
  assert.deepEqual(policy.decide(read("globex")), { allow: false, reason: "CROSS_TENANT_ACCESS" });
  assert.deepEqual(policy.decide(read("acme")), { allow: true });
});
