import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { AuthzPolicy } from "../../services/policy/authz-policy.js";

/** scripts/policy.sh (which installs OPA v1.22.4 into .data/bin through scripts/tools.sh when missing). */
const policySh = (...args: string[]) => execFileSync("scripts/policy.sh", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 600_000 });

test("opa test policy/: every Rego test passes (allowed and denied cases)", () => {
  const output = policySh("test");
  const summary = /PASS: (\d+)\/(\d+)/.exec(output);
  assert.ok(summary, output);
  assert.equal(summary[1], summary[2], output);
  assert.ok(Number(summary[2]) >= 15, `expected the policy's test cases, got ${summary[2]}`);
});

test("policy/authz.wasm is what `scripts/policy.sh build` compiles from policy/*.rego", () => {
  const dir = mkdtempSync(join(tmpdir(), "umw-policy-"));
  try {
    const fresh = join(dir, "authz.wasm");
    policySh("build", fresh);
    assert.ok(readFileSync(fresh).equals(readFileSync("policy/authz.wasm")), "policy/authz.wasm is stale: run `scripts/policy.sh build`");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a changed rule compiles to another policy, which decides otherwise (the comparison above can fail)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "umw-policy-"));
  try {
    // A copy of the repository's script and policy, with cross-tenant access let through.
    cpSync("scripts", join(dir, "scripts"), { recursive: true });
    cpSync("policy", join(dir, "policy"), { recursive: true });
    symlinkSync(resolve(".data"), join(dir, ".data"));
    rmSync(join(dir, "policy/authz_test.rego"));
    const rego = readFileSync("policy/authz.rego", "utf8");
    const loosened = rego.replace(/denials contains "CROSS_TENANT_ACCESS" if \{\n\tsome tenant in input.tenants\n\ttenant != input.principal.tenant\n\}/, "");
    assert.notEqual(loosened, rego, "the rule to loosen is in policy/authz.rego");
    writeFileSync(join(dir, "policy/authz.rego"), loosened);
    const out = join(dir, "loose.wasm");
    execFileSync(join(dir, "scripts/policy.sh"), ["build", out], { stdio: ["ignore", "pipe", "pipe"], timeout: 600_000 });
    assert.ok(!readFileSync(out).equals(readFileSync("policy/authz.wasm")));
    const alice = { kind: "user", subject: "alice", tenant: "acme", scopes: ["entities:read"], roles: [] } as const;
    const input = { method: "umw.v1.QueryService/GetEntity", tenants: ["globex"], principal: alice };
    assert.deepEqual((await AuthzPolicy.load(out)).decide(input), { allow: true });
    assert.deepEqual((await AuthzPolicy.load()).decide(input), { allow: false, reason: "CROSS_TENANT_ACCESS" });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
