#!/usr/bin/env bash
# The main job: set up, start the local Kafka broker, run the pipeline on the real ServiceNow log
# and the Alertmanager samples into the embedded ClickHouse (chDB, under var/), print the summary.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
deploy/setup.sh --no-test-tools
deploy/kafka.sh start
export OPSINTEL_DATA_DIR="${OPSINTEL_DATA_DIR:-$root/var}"
export OPSINTEL_SERVICE_CATALOG="${OPSINTEL_SERVICE_CATALOG:-$root/deploy/catalog/services.example.yaml}"
exec .venv/bin/opsintel demo "$@"
