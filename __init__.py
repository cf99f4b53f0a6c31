"""ComfyUI entry point of the MAGI-1 (WaveSpeedAI) node pack: registration only (V3 schema)."""
from .nodes import comfy_entrypoint

WEB_DIRECTORY = "./web"

__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
