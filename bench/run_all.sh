#!/usr/bin/env bash
# Runs every benchmark with the project's venv and prints their Markdown tables.
#   bench/run_all.sh            # full: 96- and 480-frame clips (~25 minutes, mostly settle time)
#   bench/run_all.sh --quick    # 96-frame clip, fewer rounds (~3 minutes)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# The newest complete venv that scripts/bootstrap.sh built, unless PY is given.
if [ -z "${PY:-}" ]; then
  done_marker="$(ls -td "${MAGI1_CACHE:-$HOME/.cache/comfyui-magi1}"/venv-*/.complete 2>/dev/null | head -n 1 || true)"
  PY="${done_marker:+$(dirname "$done_marker")/bin/python}"
fi
if [ -z "$PY" ]; then
  echo "no venv found: run scripts/bootstrap.sh first, or set PY=/path/to/python" >&2
  exit 1
fi
echo "## PNG level (bench/bench_png.py)"; echo
"$PY" "$here/bench_png.py"
echo; echo "## MP4 → float32 frames (bench/bench_decode.py)"; echo
if [ "${1:-}" = "--quick" ]; then
  "$PY" "$here/bench_decode.py" --quick
else
  "$PY" "$here/bench_decode.py"
  echo; echo "## Ideas tried (bench/bench_decode_ideas.py)"; echo
  "$PY" "$here/bench_decode_ideas.py"
fi
echo; echo "## Batches and the ledger's claim (bench/bench_billing.py)"; echo
"$PY" "$here/bench_billing.py" ${1:+"$1"}
