#!/usr/bin/env bash
# Command 2 of the README: set everything up (first time: a few minutes) and run every test:
# lint, unit, emulator, official SDK, real ComfyUI, and browser tests. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh" --browser
echo "== ruff"
"$MAGI1_PYTHON" -m ruff check .
echo "== pytest"
exec "$MAGI1_PYTHON" -m pytest tests "$@"
