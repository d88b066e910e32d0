#!/usr/bin/env bash
# npm start: local Redis/Postgres/Kafka, dev certificates, migrations, then every service in one
# process (edge on http://127.0.0.1:8080). Config: UMW_* variables or a file named by UMW_CONFIG.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/infra.sh up
# shellcheck source=scripts/infra-env.sh
source scripts/infra-env.sh
export UMW_CONFIG="${UMW_CONFIG:-config/demo.yaml}"
node bin/umw.mjs certs
node bin/umw.mjs migrate
exec node bin/umw.mjs serve all
