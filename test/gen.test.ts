import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";

/** In the descriptor set too, so that Envoy's transcoder can print google.rpc.Status details as JSON. */
const ERROR_DETAILS = "node_modules/google-proto-files/google/rpc/error_details.proto";

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : [path];
  });
}

test("buf lint passes on the contracts", () => {
  execFileSync("npx", ["buf", "lint"], { stdio: "pipe" });
});

test("gen/ matches what `npm run gen` produces from proto/", () => {
  const out = mkdtempSync(join(tmpdir(), "umw-gen-"));
  try {
    execFileSync("npx", ["buf", "generate", "--output", out], { stdio: "pipe" });
    execFileSync("npx", ["buf", "build", "--path", "proto/umw", "--path", ERROR_DETAILS, "-o", join(out, "gen", "umw.binpb")], { stdio: "pipe" });
    const fresh = files(join(out, "gen")).map((path) => relative(join(out, "gen"), path)).sort();
    const committed = files("gen").map((path) => relative("gen", path)).sort();
    assert.deepEqual(committed, fresh, "gen/ has missing or extra files: run `npm run gen`");
    for (const path of fresh) {
      assert.ok(readFileSync(join("gen", path)).equals(readFileSync(join(out, "gen", path))), `gen/${path} is stale: run \`npm run gen\``);
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
