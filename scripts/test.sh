#!/usr/bin/env bash
# The project's one test command (README step 2; .ci/run calls exactly this).
# Installs into .venv (created if absent), tries to make headless Chromium available for the browser
# tests (scripts/ensure-chromium.sh; they skip with a reason if it cannot), starts a throw-away
# PostgreSQL server (scripts/postgres.sh), then runs ruff, mypy --strict on cds/, and the whole
# pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."

pick_python() {
  # durable-rules 2.0.28 does not import on Python 3.13: use 3.12 or 3.11.
  for candidate in "${PYTHON:-}" python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 13) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "error: need Python 3.11 or 3.12 (durable-rules does not import on 3.13)" >&2
  return 1
}

if [ ! -x .venv/bin/python ]; then
  "$(pick_python)" -m venv .venv
fi
# shellcheck disable=SC1091
source .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -e ".[dev]"

bash scripts/ensure-chromium.sh

# PostgreSQL for the database tests (audit, feedback and replay store shared by two instances):
# installed from Debian packages when missing, run as a non-root user in a temp dir. CI must not
# skip those tests, so a server that cannot start fails the run.
if [ -z "${CDS_TEST_POSTGRES_URL:-}" ]; then
  pg_dir="$(mktemp -d)"
  CDS_TEST_POSTGRES_URL="$(bash scripts/postgres.sh start "$pg_dir/pg")"
  export CDS_TEST_POSTGRES_URL
  trap 'bash scripts/postgres.sh stop "$pg_dir/pg" || true; rm -rf "$pg_dir"' EXIT
fi
export CDS_REQUIRE_POSTGRES=1

ruff check .
mypy --strict cds
python -m pytest "$@"
