#!/usr/bin/env bash
# Command 2 of the README: set everything up (first time: a few minutes) and run every test:
# lint, unit, emulator, official SDK, and the real-ComfyUI and browser tests on both ComfyUI 0.3.75
# and 0.33.0. Extra arguments go to pytest. ComfyUI 0.33.0's source comes from the archive named by
# MAGI1_COMFYUI_033_ARCHIVE, else from a git checkout of its release tag (see scripts/bootstrap.sh).
# The browser tests install Debian's chromium when they first run (scripts/install_browser.sh); the
# farm tests' PostgreSQL binaries come from Debian's package (scripts/install_postgres.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh" --comfyui-033 --postgres
cd "$(dirname "${BASH_SOURCE[0]}")/.."
echo "== ruff"
"$MAGI1_PYTHON" -m ruff check .
echo "== pytest"
exec "$MAGI1_PYTHON" -m pytest tests "$@"
