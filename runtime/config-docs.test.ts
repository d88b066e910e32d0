import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describeSettings } from "./config.js";
import { BEGIN_MARK, END_MARK, renderSettingsTable, withGeneratedSection } from "./config-docs.js";

const DOC = new URL("../docs/configuration.md", import.meta.url);

test("docs/configuration.md matches runtime/config.ts (run `npm run gen:docs`)", () => {
  const committed = readFileSync(DOC, "utf8");
  assert.equal(committed, withGeneratedSection(committed), "docs/configuration.md is stale: run `npm run gen:docs`");
});

test("the table has one row per setting, with its variable, default and description", () => {
  const settings = describeSettings();
  const rows = renderSettingsTable().split("\n").slice(2);
  assert.equal(rows.length, settings.length);
  const watch = rows.find((row) => row.startsWith("| `UMW_COMMAND_WATCH_POLL_MS` |"));
  assert.match(watch ?? "", /\| `commandWatchPollMs` \| `1000` \| WatchCommand/);
  for (const setting of settings) assert.ok(setting.description.length > 10, `${setting.env} needs a description`);
  assert.equal(new Set(settings.map((setting) => setting.env)).size, settings.length, "two settings share a variable");
});

test("a document whose table differs from the schema is rewritten, one without the marks refused", () => {
  const stale = `intro\n${BEGIN_MARK}\n| old |\n${END_MARK}\nafter\n`;
  const fresh = withGeneratedSection(stale);
  assert.notEqual(fresh, stale);
  assert.ok(fresh.startsWith(`intro\n${BEGIN_MARK}\n| variable |`) && fresh.endsWith(`\n${END_MARK}\nafter\n`));
  assert.equal(withGeneratedSection(fresh), fresh);
  assert.throws(() => withGeneratedSection("no marks here"), /no generated section/);
});
