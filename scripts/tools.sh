#!/usr/bin/env bash
# Command-line tools the tests drive, installed under <repo>/.data/bin. Idempotent: a tool that is
# already there at the pinned version is kept.
#
#   scripts/tools.sh grpcurl    grpcurl, the reference gRPC client (test/reflection.test.ts)
#   scripts/tools.sh opa        Open Policy Agent, compiles policy/*.rego to wasm and runs `opa test`
#                               (test/policy/opa.test.ts)
#
# Both are built with `go install` from the Go module proxy. It needs Go >= 1.21 (on PATH or in
# /usr/local/go, where the go.dev/dl tarball installs); Go fetches a newer toolchain itself if the
# module asks for one. Debian bookworm's golang-go (1.19) is too old.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/.data/bin"
GRPCURL_VERSION=v1.9.3
OPA_VERSION=v1.22.4

die() { echo "tools: ERROR: $*" >&2; exit 1; }

# A go binary of version 1.21 or newer, or nothing.
find_go() {
  local candidate version
  for candidate in "$(command -v go || true)" /usr/local/go/bin/go; do
    [[ -n "$candidate" && -x "$candidate" ]] || continue
    version="$("$candidate" env GOVERSION 2>/dev/null || true)"  # go1.26.8
    [[ "$version" =~ ^go1\.([0-9]+) ]] && ((BASH_REMATCH[1] >= 21)) && { echo "$candidate"; return 0; }
  done
  return 1
}

# go_tool NAME MODULE/PACKAGE VERSION: `go install` the package into $BIN unless that version is there.
go_tool() {
  local name="$1" package="$2" version="$3" target="$BIN/$1" go installed=""
  go="$(find_go || true)"
  if [[ -x "$target" ]]; then
    # `go install` leaves -version unset; the module version is in the build info.
    [[ -n "$go" ]] && installed="$("$go" version -m "$target" 2>/dev/null | awk '$1 == "mod" { print $3 }' || true)"
    if [[ -z "$go" || "$installed" == "$version" ]]; then
      echo "tools: $name ${installed:-(version unknown: no Go to read it)} at $target"
      return 0
    fi
  fi
  [[ -n "$go" ]] || die "$name needs Go >= 1.21 to build (https://go.dev/dl/; Debian's golang-go 1.19 is too old)"
  echo "tools: installing $name $version into $BIN ($("$go" env GOVERSION))"
  mkdir -p "$BIN"
  rm -f "$target"  # go install will not replace a file it did not build
  GOBIN="$BIN" "$go" install "$package@$version"
  echo "tools: $name $version at $target"
}

[[ $# -gt 0 ]] || die "usage: scripts/tools.sh grpcurl|opa..."
for tool in "$@"; do
  case "$tool" in
    grpcurl) go_tool grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl "$GRPCURL_VERSION" ;;
    opa) go_tool opa github.com/open-policy-agent/opa "$OPA_VERSION" ;;
    *) die "unknown tool '$tool' (known: grpcurl, opa)" ;;
  esac
done
