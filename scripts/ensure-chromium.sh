#!/usr/bin/env bash
# Headless Chromium for the browser tests (scripts/test.sh runs this). Never fails the run: when
# Chromium is missing and cannot be installed, it warns and the browser tests skip with a reason.
# As root on Debian/Ubuntu it installs the chromium package; apt may be busy (another apt or dpkg
# holds its lock), so it waits a little, retries a few times, then gives up.
# CDS_CHROMIUM names the browser binary (default: chromium on PATH, else /usr/bin/chromium).
set -uo pipefail

chromium="${CDS_CHROMIUM:-$(command -v chromium 2>/dev/null || echo /usr/bin/chromium)}"
attempts="${CDS_APT_ATTEMPTS:-3}"
pause="${CDS_APT_PAUSE:-5}"

[ -x "$chromium" ] && exit 0

if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "warning: $chromium is missing; browser tests will be skipped" >&2
  exit 0
fi

echo "installing Debian chromium for the headless browser tests"
for attempt in $(seq 1 "$attempts"); do
  if apt-get -o DPkg::Lock::Timeout=20 update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=20 install -y -qq chromium >/dev/null; then
    exit 0
  fi
  echo "apt-get failed (attempt $attempt of $attempts; is another apt or dpkg running?)" >&2
  [ "$attempt" = "$attempts" ] || sleep "$pause"
done
echo "warning: could not install chromium; browser tests will be skipped" >&2
exit 0
