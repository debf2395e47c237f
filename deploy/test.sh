#!/usr/bin/env bash
# The tests, as CI runs them: set up, lint, type-check, start the broker, run every test
# (unit and integration), stop the broker. Exit code: the first failure's.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
deploy/setup.sh || exit 1
deploy/helm.sh >/dev/null || exit 1
export PATH="$root/.cache/bin:$PATH"

status=0
echo "== ruff";  .venv/bin/ruff check . || status=1
echo "== mypy";  .venv/bin/mypy || status=1

started_kafka=0
if ! deploy/kafka.sh status; then
  export KAFKA_PORT="${KAFKA_PORT:-9092}"
  deploy/kafka.sh start || exit 1
  started_kafka=1
fi
echo "== pytest"
.venv/bin/pytest "$@"
rc=$?
[ $started_kafka = 1 ] && deploy/kafka.sh stop
[ $rc -ne 0 ] && status=$rc
exit $status
