#!/usr/bin/env bash
# npm test: typecheck, bring up Redis/Postgres/Kafka (scripts/infra.sh), install grpcurl and OPA
# (scripts/tools.sh), then every *.test.ts under test/, services/, runtime/, cli/ and bench/ with Node's
# test runner.
# npm run test:unit (scripts/test.sh --unit): only the tests that need no Redis, Postgres or Kafka,
# with the infrastructure URLs pointed at a closed port so a test that needs it fails at once.
# Extra arguments go to node --test.
set -euo pipefail
cd "$(dirname "$0")/.."

# The unit tier: every *.test.ts beside the code, and these files under test/, which start their
# own servers in the process (or `umw serve --embedded`) and never reach the infrastructure.
UNIT_IN_TEST=(
  test/deploy.test.ts
  test/gen.test.ts
  test/mesh.test.ts
  test/edge/rest.test.ts
  test/edge/connect.test.ts
  test/edge/transcoding.test.ts
  test/edge/bad-requests.test.ts
  test/edge/fuzz.test.ts
  test/edge/slow-clients.test.ts
  test/edge/realtime-unknown-type.test.ts
  test/interceptors.test.ts
  test/embedded.test.ts
  test/processor/embedded.test.ts
)

if [[ "${1:-}" == "--unit" ]]; then
  shift
  mapfile -t files < <(find runtime services cli bench -name '*.test.ts' | sort)
  files+=("${UNIT_IN_TEST[@]}")
  closed="127.0.0.1:1"
  export UMW_REDIS_URL="redis://$closed" UMW_PG_URL="postgres://umw:umw@$closed/umw" \
    UMW_PG_REPLICA_URL="postgres://umw:umw@$closed/umw" UMW_KAFKA_BROKERS="$closed"
  echo "test:unit: ${#files[@]} test files, infrastructure URLs at $closed (closed)"
  exec node --import tsx --test --test-concurrency="${UMW_TEST_CONCURRENCY:-2}" "$@" "${files[@]}"
fi

echo "test: typecheck"
npx tsc -p .
scripts/infra.sh up
scripts/tools.sh grpcurl opa
# shellcheck source=scripts/infra-env.sh
source scripts/infra-env.sh

mapfile -t files < <(find test services runtime cli bench -name '*.test.ts' | sort)
echo "test: ${#files[@]} test files"
exec node --import tsx --test --test-concurrency="${UMW_TEST_CONCURRENCY:-2}" "$@" "${files[@]}"
