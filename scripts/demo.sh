#!/usr/bin/env bash
# Command 1 of the README: run an example workflow (image to video by default) in a real ComfyUI
# on the bundled WaveSpeed emulator; writes an MP4 and contact_sheet.png to out/demo/ and prints
# their paths. First run: a few minutes of setup. Options: see `scripts/demo.sh --help`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
exec "$MAGI1_PYTHON" -m tools.demo "$@"
