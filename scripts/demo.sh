#!/usr/bin/env bash
# Command 1 of the README: run an example workflow (image to video by default) in a real ComfyUI
# on the bundled WaveSpeed emulator; writes an MP4 and contact_sheet.png to out/demo/ and prints
# their paths. First run: a few minutes of setup. Options: scripts/demo.sh --help
# Relative --out / --workflow paths mean the directory it is called from.
set -euo pipefail
demo_args=("$@")
set --  # a sourced script sees the caller's arguments: env.sh must not get the demo's options
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
PYTHONPATH="$_magi1_root${PYTHONPATH:+:$PYTHONPATH}" exec "$MAGI1_PYTHON" -m tools.demo "${demo_args[@]+"${demo_args[@]}"}"
