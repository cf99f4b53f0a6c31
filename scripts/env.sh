# Sourced by the scripts: runs bootstrap.sh (idempotent, cached) and exports what it printed:
# MAGI1_PYTHON (the venv's python) and MAGI1_COMFYUI_DIR (the ComfyUI tree).
_magi1_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
while IFS='=' read -r _name _value; do
  case "$_name" in MAGI1_*) export "$_name=$_value" ;; esac
done < <(bash "$_magi1_root/scripts/bootstrap.sh" "$@")
[ -n "${MAGI1_PYTHON:-}" ] || { echo "bootstrap failed" >&2; exit 1; }
cd "$_magi1_root"
