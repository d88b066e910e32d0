// `npm run build` (scripts/build.sh): the compiled output runs on plain Node, with no TypeScript
// loader: the CLI answers, and `serve all --embedded` from it becomes ready (migrations found from
// dist/, every service module loads) and stops cleanly. Builds into a folder of its own inside
// the repository (so node_modules resolves) and removes it.
//
//   node --import tsx --test test/build.test.ts
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { builtinModules } from "node:module";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitFor } from "./support/wait.js";
import { devAuthorization } from "./support/embedded-env.js";
import { freeServicePorts } from "./support/ports.js";
import { runId } from "./support/env.js";

const out = `.build-test-${runId()}`;
const main = join(out, "cli", "main.js");

/** The compiled CLI under plain node, without the caller's UMW_* settings. */
function cleanEnv(extra: Record<string, string | number>): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("UMW_")));
  return { ...env, ...Object.fromEntries(Object.entries(extra).map(([key, value]) => [key, String(value)])), NODE_OPTIONS: "" };
}

describe("npm run build", { timeout: 240_000 }, () => {
  before(() => {
    execFileSync("scripts/build.sh", [out], { stdio: "pipe" });
  });
  after(() => rmSync(out, { recursive: true, force: true }));

  test("emits JavaScript only, with the migrations, and nothing that needs tsx", () => {
    // scripts/ is a link to the repository's scripts (for `umw infra`), not build output.
    const files = readdirSync(out, { recursive: true }).map(String).filter((file) => !file.startsWith("scripts"));
    assert.ok(files.includes(join("cli", "main.js")) && files.includes(join("gen", "umw", "v1", "query_pb.js")));
    assert.ok(files.some((file) => file.startsWith("migrations") && file.endsWith(".sql")), "migrations are copied");
    assert.deepEqual(files.filter((file) => file.endsWith(".ts") && !file.endsWith(".d.ts")), []);
    assert.deepEqual(files.filter((file) => file.endsWith(".test.js")), [], "tests are not part of the build");
    const js = files.filter((file) => file.endsWith(".js"));
    assert.deepEqual(js.filter((file) => /from "tsx|import\("tsx/.test(readFileSync(join(out, file), "utf8"))), []);
  });

  test("the compiled modules import only Node built-ins and production dependencies (npm ci --omit=dev)", () => {
    const pkg = JSON.parse(readFileSync("package.json", "utf8")) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
    assert.ok(!("tsx" in pkg.dependencies) && !("typescript" in pkg.dependencies), "tsx and typescript are build-time only");
    const js = readdirSync(out, { recursive: true }).map(String).filter((file) => !file.startsWith("scripts") && file.endsWith(".js"));
    const missing = new Set<string>();
    for (const file of js) {
      const text = readFileSync(join(out, file), "utf8");
      for (const [, from, dynamic, bare] of text.matchAll(/\bfrom\s*["']([^"']+)["']|\bimport\(\s*["']([^"']+)["']\s*\)|^import\s*["']([^"']+)["']/gm)) {
        const specifier = from ?? dynamic ?? bare;
        if (!specifier || specifier.startsWith(".") || specifier.startsWith("node:")) continue;
        const name = specifier.startsWith("@") ? specifier.split("/").slice(0, 2).join("/") : specifier.split("/")[0]!;
        if (!(name in pkg.dependencies) && !builtinModules.includes(name)) missing.add(`${name} (${file})`);
      }
    }
    assert.deepEqual([...missing], [], "imported at run time but not a production dependency");
  });

  test("the compiled CLI answers help, and refuses an unknown command", () => {
    const help = spawnSync(process.execPath, [main, "help"], { env: cleanEnv({}), encoding: "utf8" });
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /serve <service\.\.\.>\|all/);
    const unknown = spawnSync(process.execPath, [main, "frobnicate"], { env: cleanEnv({}), encoding: "utf8" });
    assert.equal(unknown.status, 2);
    assert.match(unknown.stderr, /unknown command "frobnicate"/);
  });

  test("the compiled `serve all --embedded` becomes ready and stops on SIGTERM", async () => {
    const dir = mkdtempSync(join(tmpdir(), "umw-build-"));
    const ports = await freeServicePorts();
    const child = spawn(process.execPath, [main, "serve", "all", "--embedded"], {
      env: cleanEnv({ ...ports, UMW_CERTS_DIR: join(dir, "certs"), UMW_AUTH_DEV_KEYS_DIR: join(dir, "certs", "dev-issuer"), UMW_CONFIG: "config/demo.yaml", UMW_LOG_LEVEL: "warn" }),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout!.on("data", (chunk) => (output += chunk));
    child.stderr!.on("data", (chunk) => (output += chunk));
    const exited = once(child, "exit");
    try {
      await waitFor(
        async () => {
          assert.equal(child.exitCode, null, `exited before ready:\n${output}`);
          return (await fetch(`http://127.0.0.1:${ports.UMW_EDGE_PORT}/readyz`).then((response) => response.status, () => 0)) === 200;
        },
        { what: "/readyz 200 from the built umw", timeoutMs: 120_000, everyMs: 100, detail: () => output },
      );
      const url = `http://127.0.0.1:${ports.UMW_EDGE_PORT}/v1/tenants/acme/types/todo/entities/missing`;
      const anonymous = await fetch(url);
      assert.equal(anonymous.status, 401, await anonymous.text());
      const read = await fetch(url, { headers: { authorization: await devAuthorization(join(dir, "certs"), ports.UMW_EDGE_PORT!, "acme") } });
      assert.equal(read.status, 404, await read.text());
      child.kill("SIGTERM");
      const [code] = await exited;
      assert.equal(code, 0, output);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
