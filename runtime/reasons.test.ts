import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Code } from "./errors.js";
import { REASONS, Reason, isReason } from "./reasons.js";
import { BEGIN_MARK, END_MARK, renderReasonsTable, withReasonsSection } from "./reasons-docs.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const DOC = join(ROOT, "docs/errors.md");

/** The places a reason is written as a literal: the RpcError constructor and helpers, Connect's reason picks. */
const REASON_SITES: readonly RegExp[] = [
  /\b(?:invalidArgument|notFound|unavailable)\(\s*"([A-Z][A-Z0-9_]*)"/g,
  /\bnew RpcError\(\s*[^,()]+(?:\([^()]*\))?[^,()]*,\s*"([A-Z][A-Z0-9_]*)"/g,
  /\bstatusJson\(\s*\d+,\s*"([A-Z][A-Z0-9_]*)"/g,
  /\bauthRefusal\(\s*"([A-Z][A-Z0-9_]*)"/g,
  /\bstatusInit\(\s*[^,]+,\s*"([A-Z][A-Z0-9_]*)"/g,
  /\bwithReason\([^;]*?"([A-Z][A-Z0-9_]*)"/g,
];
/** Lines choosing a reason by condition (`reason = x ? "A" : "B"`, `return "A"` in a reason function). */
const REASON_CHOICE = /(?:\breason\s*=|^\s*(?:if \(.*\) )?return)[^;\n]*/gm;

export function reasonsUsedIn(source: string, choosesReasons = false): Set<string> {
  const found = new Set<string>();
  for (const site of REASON_SITES) for (const match of source.matchAll(site)) found.add(match[1]!);
  if (choosesReasons) {
    for (const line of source.matchAll(REASON_CHOICE)) for (const literal of line[0].matchAll(/(?:return|[?:=])\s*"([A-Z][A-Z0-9_]{2,})"/g)) found.add(literal[1]!);
  }
  return found;
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith(".ts") && !entry.name.endsWith(".test.ts"))
    .map((entry) => join(entry.parentPath, entry.name));
}

/** Files whose reason-picking functions return reasons as plain literals. */
const CHOOSES_REASONS = new Set(["services/edge/connect-adapter.ts"]);

test("every reason raised under runtime/ and services/ is declared in runtime/reasons.ts", () => {
  const undeclared: string[] = [];
  const used = new Set<string>();
  for (const file of [...sources(join(ROOT, "runtime")), ...sources(join(ROOT, "services"))]) {
    const relative = file.slice(ROOT.length);
    for (const reason of reasonsUsedIn(readFileSync(file, "utf8"), CHOOSES_REASONS.has(relative))) {
      used.add(reason);
      if (!isReason(reason)) undeclared.push(`${relative}: ${reason}`);
    }
  }
  assert.deepEqual(undeclared, [], "declare these reasons in runtime/reasons.ts (and run `npm run gen:docs`)");
  // The scan itself must see the sources: a broken pattern would find nothing and pass.
  assert.ok(used.size >= 60, `the scan found only ${used.size} reasons`);
  for (const known of ["ENTITY_NOT_FOUND", "BODY_TOO_LARGE", "INVALID_ENCODING", "SCHEMA_VIOLATION", "ROUTE_NOT_FOUND"]) assert.ok(used.has(known), `the scan missed ${known}`);
});

test("the scan catches each way of raising a reason", () => {
  const source = [
    `throw invalidArgument("A_ONE", "x");`,
    `new RpcError(Code.NOT_FOUND,\n  "A_TWO", "x")`,
    `new RpcError(cause.reason === "X" ? Code.UNAVAILABLE : Code.INTERNAL, "A_THREE", "x")`,
    `statusInit(Code.INTERNAL, "A_FOUR", "x")`,
    `direct(404, statusJson(5, "A_FIVE", "x"))`,
    `const reason = status === 415 ? "A_SIX" : "A_SEVEN";`,
    `const message = "NOT_A_REASON";`,
  ].join("\n");
  assert.deepEqual([...reasonsUsedIn(source, true)].sort(), ["A_FIVE", "A_FOUR", "A_ONE", "A_SEVEN", "A_SIX", "A_THREE", "A_TWO"]);
});

test("each reason has a code, a meaning, and a constant of its own name", () => {
  for (const [name, spec] of Object.entries(REASONS)) {
    assert.match(name, /^[A-Z][A-Z0-9_]+$/);
    assert.equal(Reason[name as keyof typeof Reason], name);
    assert.ok(spec.codes.every((code) => Code[code] !== undefined && code !== Code.OK), `${name} has a bad code`);
    assert.ok(spec.meaning.length > 10, `${name} needs a meaning`);
  }
  assert.equal(isReason("NOT_DECLARED"), false);
  assert.equal(isReason("toString"), false);
});

test("docs/errors.md matches runtime/reasons.ts (run `npm run gen:docs`)", () => {
  const committed = readFileSync(DOC, "utf8");
  assert.equal(committed, withReasonsSection(committed), "docs/errors.md is stale: run `npm run gen:docs`");
  const rows = renderReasonsTable().split("\n").slice(2);
  assert.equal(rows.length, Object.keys(REASONS).length);
  assert.match(rows.find((row) => row.startsWith("| `IDEMPOTENCY_KEY_REUSED` |")) ?? "", /\| `FAILED_PRECONDITION` \(9\) \| 422 \|/);
  assert.match(rows.find((row) => row.startsWith("| `ENTITY_NOT_FOUND` |")) ?? "", /\| `NOT_FOUND` \(5\) \| 404 \|/);
  assert.throws(() => withReasonsSection("no marks"), /no generated section/);
  assert.ok(withReasonsSection(`a\n${BEGIN_MARK}\nold\n${END_MARK}\n`).includes("| reason |"));
});
