#!/usr/bin/env bash
# buf breaking against a git ref (default main): compares the contracts with the descriptor set
# committed there (gen/umw.binpb), so the check needs no network and no node_modules at that ref.
set -euo pipefail
cd "$(dirname "$0")/.."
ref="${1:-main}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
git show "$ref:gen/umw.binpb" > "$tmp/against.binpb"
npx buf breaking proto --against "$tmp/against.binpb"
echo "breaking: no breaking change against $ref"
