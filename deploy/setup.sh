#!/usr/bin/env bash
# Sets up everything opsintel needs on a fresh machine: the Python venv with the package and its
# test tools, the Kafka broker jars (Maven Central), and promtool (Debian's prometheus package).
# Idempotent: a second run only checks.  Usage: deploy/setup.sh [--no-test-tools]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
extras="test"
[ "${1:-}" = "--no-test-tools" ] && extras="eval"

py="${PYTHON:-python3.11}"
command -v "$py" >/dev/null || py=python3
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $("$py" --version)"
  "$py" -m venv .venv
fi
stamp=.venv/.opsintel-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing opsintel[$extras] into .venv"
  log=.venv/pip-install.log
  if ! { .venv/bin/python -m pip install -q --upgrade pip && .venv/bin/python -m pip install -q -e ".[$extras]"; } \
      >"$log" 2>&1; then
    cat "$log" >&2; echo "setup: pip install failed (log above)" >&2; exit 1
  fi
  touch "$stamp"
fi

deploy/kafka.sh resolve

if [ "$extras" = "test" ] && ! command -v promtool >/dev/null; then
  echo "setup: installing promtool (Debian package prometheus)"
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  # the package's service is not needed: only the promtool binary
  $sudo systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
echo "setup: done"
