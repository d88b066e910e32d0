#!/usr/bin/env bash
# Compiles the authorization policy (policy/*.rego) to WebAssembly with the real OPA
# (scripts/tools.sh opa), or runs its Rego tests.
#
#   scripts/policy.sh build [OUT]   policy/authz.wasm (or OUT): entrypoint umw/authz/decision
#   scripts/policy.sh test          opa test policy/ (every policy/*_test.rego)
#
# The compiled policy is committed; test/policy/opa.test.ts fails when it is stale.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OPA="$ROOT/.data/bin/opa"
ENTRYPOINT=umw/authz/decision

"$ROOT/scripts/tools.sh" opa >/dev/null
case "${1:-}" in
  build)
    out="${2:-$ROOT/policy/authz.wasm}"
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    # Relative to the repository, so that the file names compiled into the wasm are the same in any checkout.
    (cd "$ROOT" && "$OPA" build -t wasm -e "$ENTRYPOINT" --ignore '*_test.rego' --ignore '*.wasm' -o "$work/bundle.tar.gz" policy)
    # The bundle's members are absolute (/policy.wasm); GNU tar says it strips the slash.
    tar -xzf "$work/bundle.tar.gz" -C "$work" /policy.wasm 2> >(grep -v "Removing leading" >&2)
    install -m 644 "$work/policy.wasm" "$out"
    echo "policy: $ENTRYPOINT -> $out"
    ;;
  test) "$OPA" test "$ROOT/policy" -v ;;
  *) echo "usage: scripts/policy.sh build [OUT] | test" >&2; exit 2 ;;
esac
