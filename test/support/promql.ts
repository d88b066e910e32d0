import { readFileSync } from "node:fs";
import { parse } from "yaml";

const KEYWORDS = new Set(["by", "without", "and", "or", "unless", "on", "ignoring", "group_left", "group_right", "bool", "offset", "inf", "nan"]);

/** The metric names a PromQL expression reads (not functions, keywords, labels or recording rules `a:b:c`). */
export function metricNamesOf(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, "")
    .replace(/\{[^}]*\}/g, "")
    .replace(/\[[^\]]*\]/g, "")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, "")
    .replace(/\$\w+/g, "");
  const names = new Set<string>();
  for (const match of bare.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?/g)) {
    const [text, call] = [match[0].replace(/\s*\($/, ""), match[1]];
    if (call || KEYWORDS.has(text.toLowerCase()) || text.includes(":")) continue;
    names.add(text);
  }
  return [...names];
}

export interface RuleFile {
  groups: { name: string; rules: { record?: string; alert?: string; expr: string }[] }[];
}

export const RULES_FILE = "ops/prometheus/rules.yml";
export const DASHBOARD_FILE = "ops/grafana/umw.json";

/** Every expression of the rules file. */
export function ruleExpressions(file = RULES_FILE): string[] {
  const rules = parse(readFileSync(file, "utf8")) as RuleFile;
  return rules.groups.flatMap((group) => group.rules.map((rule) => rule.expr));
}

/** Every expression of the Grafana dashboard's panels, with Grafana's variables made plain PromQL. */
export function dashboardExpressions(file = DASHBOARD_FILE): string[] {
  const dashboard = JSON.parse(readFileSync(file, "utf8")) as { panels: { targets?: { expr: string }[]; panels?: unknown[] }[] };
  return dashboard.panels.flatMap((panel) => (panel.targets ?? []).map((target) => target.expr.replace(/\$__rate_interval/g, "1m").replace(/\$__range/g, "1h")));
}
