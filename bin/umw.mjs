#!/usr/bin/env node
// Runs the compiled CLI (dist/, `npm run build`) when it is there and no source is newer than it;
// otherwise the TypeScript sources through tsx's loader (development: tsx is a devDependency).
import { existsSync, readdirSync, statSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = new URL("../", import.meta.url);
const compiled = new URL("dist/cli/main.js", root);
const stamp = new URL("dist/.built", root);
const SOURCE_DIRS = ["cli", "runtime", "services", "gen"];

/** Newest modification time of the TypeScript sources; 0 where there are none (the Docker image). */
function newestSource() {
  let newest = 0;
  for (const dir of SOURCE_DIRS) {
    const path = fileURLToPath(new URL(dir, root));
    if (!existsSync(path)) continue;
    for (const entry of readdirSync(path, { recursive: true, withFileTypes: true })) {
      if (entry.isFile() && entry.name.endsWith(".ts") && !entry.name.endsWith(".test.ts")) {
        newest = Math.max(newest, statSync(`${entry.parentPath}/${entry.name}`).mtimeMs);
      }
    }
  }
  return newest;
}

if (existsSync(compiled) && existsSync(stamp) && newestSource() <= statSync(stamp).mtimeMs) {
  await import(compiled.href);
} else {
  if (existsSync(compiled)) console.error("umw: dist/ is older than the sources; running the sources (npm run build refreshes it)");
  const { register } = await import("tsx/esm/api");
  register();
  await import(new URL("cli/main.ts", root).href);
}
