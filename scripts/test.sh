#!/usr/bin/env bash
# npm test: typecheck, bring up Redis/Postgres/Kafka (scripts/infra.sh), install grpcurl
# (scripts/tools.sh), then every *.test.ts under test/, services/ and runtime/ with Node's test
# runner. Extra arguments go to node --test.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "test: typecheck"
npx tsc -p .
scripts/infra.sh up
scripts/tools.sh grpcurl
# shellcheck source=scripts/infra-env.sh
source scripts/infra-env.sh

mapfile -t files < <(find test services runtime -name '*.test.ts' -not -path '*/node_modules/*' | sort)
echo "test: ${#files[@]} test files"
exec node --import tsx --test --test-concurrency="${UMW_TEST_CONCURRENCY:-2}" "$@" "${files[@]}"
