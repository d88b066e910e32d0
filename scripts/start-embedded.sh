#!/usr/bin/env bash
# npm start: every service in one process on the embedded adapters (PGlite, in-process bus,
# in-memory cache): no Redis, Postgres or Kafka to install or start. Dev certificates are created
# on the first run; the edge is on http://127.0.0.1:8080 (UMW_EDGE_PORT). Data is in memory unless
# UMW_EMBEDDED_DATA_DIR names a folder for the database. With the real infrastructure: npm run start:infra.
set -euo pipefail
cd "$(dirname "$0")/.."
export UMW_CONFIG="${UMW_CONFIG:-config/demo.yaml}"
exec node bin/umw.mjs serve all --embedded
