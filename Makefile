# `make test` is the one command that runs every test: it starts a real
# Kafka broker and a real ClickHouse server (installing what is missing),
# runs go vet, the unit tests with the race detector and the integration
# tests, and stops the servers it started.

.PHONY: test unit build run demo services-start services-stop bench bench-micro

build:
	go build -o tariff ./cmd/tariff

test:
	bash scripts/test.sh

# Unit tests only: no servers needed (integration tests skip loudly).
unit:
	go vet ./...
	go test -race -count=1 ./...

run:
	go run ./cmd/tariff run

demo:
	go run ./cmd/tariff demo

services-start:
	bash scripts/kafka.sh start
	bash scripts/clickhouse.sh start

services-stop:
	-bash scripts/kafka.sh stop
	-bash scripts/clickhouse.sh stop

# The whole performance report (bench/README.md): starts the servers if
# they are not running, then micro benchmarks, end to end with the bare
# baselines and a latency run, and the growth series, into
# bench/results/report-<date>.md.
bench: services-start
	go run ./bench/e2e -report

# Every Go benchmark, no servers (the ClickHouse one skips).
bench-micro:
	go test -run '^$$' -bench . -benchmem ./...
