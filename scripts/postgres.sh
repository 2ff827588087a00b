#!/usr/bin/env bash
# Start a throw-away PostgreSQL server for the tests and print its SQLAlchemy URL on stdout.
# Installs Debian's postgresql when no server binaries are found (root only); runs the server as
# `nobody` when called as root (PostgreSQL refuses to run as root). Usage:
#   export CDS_TEST_POSTGRES_URL="$(scripts/postgres.sh start DIR)"   ...   scripts/postgres.sh stop DIR
set -euo pipefail
action="${1:?start|stop}"
dir="${2:?data directory}"

find_bin() {
  for d in /usr/local/bin /usr/lib/postgresql/*/bin; do
    if [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
  done
  return 1
}

bin="$(find_bin || true)"
if [ -z "$bin" ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian postgresql for the database tests" >&2
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  bin="$(find_bin)"
fi
[ -n "$bin" ] || { echo "error: no PostgreSQL server binaries (apt-get install postgresql)" >&2; exit 1; }

as_owner() {
  if [ "$(id -u)" = "0" ]; then runuser -u nobody -- "$@"; else "$@"; fi
}

case "$action" in
  start)
    mkdir -p "$dir"
    if [ "$(id -u)" = "0" ]; then
      chown nobody "$dir"
      # let `nobody` reach the directory through temporary parents made 0700 by mktemp
      p="$(dirname "$(realpath "$dir")")"
      while [ "$p" != "/" ] && [ "$p" != "/tmp" ]; do chmod o+x "$p"; p="$(dirname "$p")"; done
    fi
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >/dev/null
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
    echo "postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
    ;;
  stop)
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
esac
