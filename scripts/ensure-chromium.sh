#!/usr/bin/env bash
# Make sure Debian's Chromium is at /usr/bin/chromium (the browser tests drive it; no browser download).
set -euo pipefail
bin=${CHROMIUM:-/usr/bin/chromium}

works() { "$bin" --headless --no-sandbox --version >/dev/null 2>&1; }

if [ -x "$bin" ] && works; then echo "chromium: $("$bin" --version 2>/dev/null)"; exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "chromium: not installed; installing Debian's chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  if [ -x "$bin" ] && works; then echo "chromium: $("$bin" --version 2>/dev/null)"; exit 0; fi
  echo "chromium: installed, but $bin does not run" >&2
  exit 1
fi
echo "chromium: $bin is missing and this is not root with apt-get (install Debian's chromium, e.g." \
     "apt-get install --no-install-recommends chromium, or set CHROMIUM to a Chromium binary)" >&2
exit 1
