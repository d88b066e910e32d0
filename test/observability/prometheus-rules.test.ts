// The SLO rules and the Grafana dashboard, checked offline with promtool (Debian's prometheus
// package, installed by `scripts/infra.sh prometheus`): rules parse, their unit tests pass, every
// dashboard expression parses as PromQL, and a broken rule is caught.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { dashboardExpressions, metricNamesOf, RULES_FILE } from "../support/promql.js";

function promtool(...args: string[]) {
  const result = spawnSync("promtool", args, { encoding: "utf8" });
  assert.ok(!result.error, `promtool is not installed (scripts/infra.sh prometheus installs it): ${result.error?.message}`);
  return { code: result.status, output: `${result.stdout}${result.stderr}` };
}

test("promtool check rules: the SLO rules parse", () => {
  const { code, output } = promtool("check", "rules", RULES_FILE);
  assert.equal(code, 0, output);
  assert.match(output, /SUCCESS: \d+ rules found/);
});

test("promtool test rules: the rules' unit tests pass", () => {
  const { code, output } = promtool("test", "rules", "ops/prometheus/rules.test.yml");
  assert.equal(code, 0, output);
  assert.match(output, /SUCCESS/);
});

test("every dashboard expression parses as PromQL, and a broken one does not", () => {
  const expressions = dashboardExpressions();
  assert.ok(expressions.length >= 25, `only ${expressions.length} expressions in the dashboard`);
  const dir = mkdtempSync(join(tmpdir(), "umw-promql-"));
  try {
    const check = (exprs: string[]) => {
      const file = join(dir, "dashboard-rules.yml");
      writeFileSync(file, stringify({ groups: [{ name: "dashboard", rules: exprs.map((expr, i) => ({ record: `dashboard:expr_${i}`, expr })) }] }));
      return promtool("check", "rules", file);
    };
    const good = check(expressions);
    assert.equal(good.code, 0, good.output);
    const bad = check(["sum(rate(rpc_server_calls_total[5m]"]);
    assert.notEqual(bad.code, 0, "an unclosed expression must fail the check");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("metric names are read out of PromQL (functions, labels, keywords and recording rules left out)", () => {
  assert.deepEqual(
    metricNamesOf('histogram_quantile(0.95, sum by (le, rpc_service) (rate(rpc_server_duration_seconds_bucket{rpc_service="x"}[5m]))) > on (job) up or umw:a:b'),
    ["rpc_server_duration_seconds_bucket", "up"],
  );
  assert.deepEqual(metricNamesOf("time() - max(umw_canary_last_success_timestamp_seconds) > 300"), ["umw_canary_last_success_timestamp_seconds"]);
});
