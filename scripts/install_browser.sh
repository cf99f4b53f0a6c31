#!/usr/bin/env bash
# Installs Debian's chromium (and a font) for the browser tests, when /usr/bin/chromium is missing.
# Called by tests/browser_support.py the first time a browser test runs, and by
# `scripts/bootstrap.sh --browser`; a no-op when chromium is there. Needs root or sudo (apt-get).
set -euo pipefail
[ -x /usr/bin/chromium ] && exit 0
echo "[install_browser] installing Debian's chromium" >&2
if [ "$(id -u)" = 0 ]; then sudo_cmd=(); else sudo_cmd=(sudo); fi
"${sudo_cmd[@]}" apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq chromium fonts-dejavu-core >&2
