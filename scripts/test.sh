#!/usr/bin/env bash
# Runs every test against real servers: starts Kafka and ClickHouse if they
# are not running (installing them on first use), runs go vet, the unit tests
# with -race and the integration tests, then stops what it started.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

started=()
cleanup() {
  for s in "${started[@]}"; do
    bash "scripts/$s.sh" stop || true
  done
}
trap cleanup EXIT

for s in kafka clickhouse; do
  if ! bash "scripts/$s.sh" status >/dev/null 2>&1; then
    bash "scripts/$s.sh" start
    started+=("$s")
  fi
done

export TARIFF_TEST_KAFKA="127.0.0.1:${KAFKA_PORT:-9092}"
export TARIFF_TEST_CLICKHOUSE="127.0.0.1:${CLICKHOUSE_PORT:-9000}"

echo "== go vet"
go vet ./...
echo "== go test -race (unit and integration)"
go test -race -count=1 -timeout 20m ./...
