#!/usr/bin/env bash
# npm run build: compiles runtime/, services/, cli/ and gen/ to JavaScript in dist/ (or the folder
# given as the first argument), laid out like the sources, with the files they read at run time:
# migrations/ (runtime/migrate.ts finds them at ../migrations from its own file) and the compiled
# authorization policy policy/authz.wasm (services/policy/authz-policy.ts). bin/umw.mjs runs
# dist/ when it is there and newer than the sources; the Docker image holds only dist/.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-dist}"
rm -rf "$out"
npx tsc -p tsconfig.build.json --outDir "$out"
cp -R migrations "$out/migrations"
mkdir -p "$out/policy" && cp policy/authz.wasm "$out/policy/authz.wasm"
# `umw infra` runs ../scripts/infra.sh from cli/: a link, so it works from a local build (the
# image has no scripts/ and no use for them).
ln -s "$(pwd)/scripts" "$out/scripts"
touch "$out/.built"
echo "build: $out/ ($(find "$out" -name '*.js' | wc -l) modules)"
