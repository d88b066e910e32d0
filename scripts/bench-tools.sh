#!/usr/bin/env bash
# Load tools the benchmarks drive: h2load (Debian nghttp2-client). Idempotent.
set -euo pipefail
if ! command -v h2load >/dev/null; then
  echo "bench-tools: installing nghttp2-client (h2load)"
  apt-get install -y --no-install-recommends nghttp2-client >/dev/null 2>&1 ||
    { apt-get update >/dev/null && apt-get install -y --no-install-recommends nghttp2-client >/dev/null; }
fi
echo "bench-tools: $(h2load --version | head -1)"
