# Sourced by the scripts: runs bootstrap.sh (idempotent, cached) with the given options and exports
# what it printed: MAGI1_PYTHON (the venv's python) and MAGI1_COMFYUI_DIR (the ComfyUI 0.3.75 tree),
# and with --comfyui-033 also MAGI1_COMFYUI_033_DIR and MAGI1_PYTHON_033 (ComfyUI 0.33.0 and its venv).
# Leaves the caller's working directory alone.
_magi1_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
while IFS='=' read -r _name _value; do
  case "$_name" in MAGI1_*) export "$_name=$_value" ;; esac
done < <(bash "$_magi1_root/scripts/bootstrap.sh" "$@")
[ -n "${MAGI1_PYTHON:-}" ] || { echo "bootstrap failed" >&2; return 1 2>/dev/null || exit 1; }
