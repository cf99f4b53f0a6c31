"""The MAGI-1 pack's library. `__version__` comes from pyproject.toml's [project] version, the one
place the version is written (the Comfy registry reads it there); "0+unknown" if the file is absent."""
import re
from pathlib import Path


def _project_version() -> str:
    try:
        text = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return "0+unknown"
    project = text.split("[project]", 1)[-1].split("\n[", 1)[0]
    match = re.search(r'^version\s*=\s*"([^"]+)"', project, re.M)
    return match.group(1) if match else "0+unknown"


__version__ = _project_version()
